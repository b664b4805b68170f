/**
 * What sync remembers next to init's checkpoint (`sync.json` in the state
 * directory): per source database the subscription it made (its OID names the
 * table synchronisation slots PostgreSQL creates, pg_<oid>_sync_…, so cleanup
 * can find them even after the subscription is gone) and the row filter each
 * table is published with (a changed filter means the table must be copied
 * again). Written atomically; never holds a password.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from './files.js';

export interface SyncRecordDatabase {
  targetDatabase: string;
  /** Which applier streams this pair: the native subscription (also when absent: records written before the client applier existed) or pgferry's client. */
  applier?: 'native' | 'client';
  /** Replication origin of the client applier on the target. */
  origin?: string;
  subscription: string;
  subscriptionOid: number;
  publication: string;
  slot: string;
  /** "schema.table" → row filter it is published with (null: every row). */
  tables: Record<string, string | null>;
  updatedAt: string;
}

export interface SyncRecord {
  version: 1;
  databases: Record<string, SyncRecordDatabase>;
}

export function syncRecordPath(stateDir: string): string {
  return path.join(stateDir, 'sync.json');
}

export async function loadSyncRecord(stateDir: string): Promise<SyncRecord | undefined> {
  try {
    const parsed = JSON.parse(await readFile(syncRecordPath(stateDir), 'utf8')) as SyncRecord;
    return parsed && parsed.version === 1 && parsed.databases ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export async function saveSyncRecord(stateDir: string, rec: SyncRecord): Promise<void> {
  await writeJsonAtomic(syncRecordPath(stateDir), rec);
}

export async function removeSyncRecord(stateDir: string): Promise<void> {
  await rm(syncRecordPath(stateDir), { force: true });
}
