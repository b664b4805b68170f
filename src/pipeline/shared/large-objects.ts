/**
 * Large objects, read under one snapshot and written to the target in one
 * transaction (so an interrupted copy leaves none half-written and a rerun
 * starts clean), with owner, comment and grants. Logical replication does not
 * carry large objects: init copies them under its snapshot, and cutover
 * mirrors what changed since (`mirrorLargeObjects`) once the source is fenced.
 */
import type pg from 'pg';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';

const CHUNK = 1024 * 1024;

export async function countLargeObjects(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_largeobject_metadata');
  return rows[0]!.n;
}

export interface CopyLargeObjectsOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  /** The snapshot to read under; without one, a fresh REPEATABLE READ snapshot (a fenced source). */
  snapshot?: string;
  /** Copy only these (default: all). */
  oids?: readonly string[];
  /** Unlink these on the target in the same transaction (gone from the source). */
  unlink?: readonly string[];
  noOwner: boolean;
  noPrivileges: boolean;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number, bytes: number) => void;
}

export async function copyLargeObjects(o: CopyLargeObjectsOptions): Promise<{ count: number; bytes: number }> {
  const src = await connect(o.source, { label: 'the source', settings: { ...CANONICAL_SETTINGS } });
  let tgt: pg.Client | undefined;
  try {
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    if (o.snapshot) await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(o.snapshot)}`);
    const { rows: objects } = await src.query<{ oid: string; owner: string; comment: string | null; grants: { grantee: string; privilege: string; grantable: boolean }[] | null }>(
      `SELECT m.oid::text AS oid, pg_get_userbyid(m.lomowner) AS owner, obj_description(m.oid, 'pg_largeobject') AS comment,
              (SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                                 'privilege', a.privilege_type, 'grantable', a.is_grantable))
                 FROM aclexplode(m.lomacl) a WHERE a.grantee <> m.lomowner) AS grants
         FROM pg_largeobject_metadata m WHERE $1::oid[] IS NULL OR m.oid = ANY($1::oid[]) ORDER BY m.oid`,
      [o.oids ?? null],
    );
    if (!objects.length && !o.unlink?.length) return { count: 0, bytes: 0 };
    tgt = await connect(o.target, { label: 'the target' });
    await tgt.query('BEGIN');
    if (o.unlink?.length) await tgt.query('SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = ANY($1::oid[])', [o.unlink]);
    // A rerun after a crash between COMMIT and the checkpoint finds them already there.
    await tgt.query('SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = ANY($1::oid[])', [objects.map((x) => x.oid)]);
    let bytes = 0;
    let done = 0;
    for (const lo of objects) {
      if (o.signal?.aborted) throw o.signal.reason;
      await tgt.query('SELECT lo_create($1::oid)', [lo.oid]);
      for (let offset = 0; ; offset += CHUNK) {
        const { rows } = await src.query<{ data: Buffer }>('SELECT lo_get($1::oid, $2, $3) AS data', [lo.oid, offset, CHUNK]);
        const data = rows[0]!.data;
        if (data.length) await tgt.query('SELECT lo_put($1::oid, $2, $3)', [lo.oid, offset, data]);
        bytes += data.length;
        if (data.length < CHUNK) break;
      }
      // Large object ids are numbers; DDL takes no parameters, and the id is checked to be digits only.
      const id = /^\d+$/.test(lo.oid) ? lo.oid : '0';
      if (!o.noOwner) await tgt.query(`ALTER LARGE OBJECT ${id} OWNER TO ${quoteIdent(lo.owner)}`);
      if (lo.comment !== null) await tgt.query(`COMMENT ON LARGE OBJECT ${id} IS ${quoteLiteral(lo.comment)}`);
      if (!o.noPrivileges) {
        for (const g of lo.grants ?? []) {
          const grantee = g.grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(g.grantee);
          const privilege = g.privilege === 'UPDATE' ? 'UPDATE' : 'SELECT';
          await tgt.query(`GRANT ${privilege} ON LARGE OBJECT ${id} TO ${grantee}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
        }
      }
      o.onProgress?.(++done, objects.length, bytes);
    }
    await tgt.query('COMMIT');
    return { count: objects.length, bytes };
  } catch (err) {
    throw operationError(err, 'copying large objects');
  } finally {
    await src.query('COMMIT').catch(() => {});
    await src.end().catch(() => {});
    await tgt?.end().catch(() => {});
  }
}

/**
 * Per large object, a digest of what a copy carries: content, comment, and
 * owner and grants unless the copy leaves them out.
 */
async function digests(client: pg.Client, withOwner: boolean, withGrants: boolean): Promise<Map<string, string>> {
  const { rows } = await client.query<{ oid: string; d: string }>(
    `SELECT oid::text AS oid,
            md5(lo_get(oid)) || '|' || coalesce(obj_description(oid, 'pg_largeobject'), '') || '|' ||
            CASE WHEN $1 THEN pg_get_userbyid(lomowner)::text ELSE '' END || '|' ||
            CASE WHEN $2 THEN coalesce((SELECT string_agg(pg_get_userbyid(a.grantee) || ':' || a.privilege_type || ':' || a.is_grantable, ',' ORDER BY pg_get_userbyid(a.grantee), a.privilege_type)
                                          FROM aclexplode(lomacl) a WHERE a.grantee <> lomowner), '') ELSE '' END AS d
       FROM pg_largeobject_metadata`,
    [withOwner, withGrants],
  );
  return new Map(rows.map((r) => [r.oid, r.d]));
}

export interface MirrorResult {
  /** Created or rewritten on the target. */
  copied: number;
  /** Unlinked on the target: gone from the source. */
  removed: number;
  bytes: number;
}

/**
 * Make the target's large objects what the source's are now: copy those that
 * are new or differ, unlink those the source no longer has, in one target
 * transaction. Meant for a source whose writers are fenced.
 */
export async function mirrorLargeObjects(
  o: Omit<CopyLargeObjectsOptions, 'snapshot' | 'oids' | 'unlink'> & {
    /** Sessions the caller holds, for the comparison (cutover's, open before the fence); the copy, if any, opens its own. */
    sessions?: { source: pg.Client; target: pg.Client };
  },
): Promise<MirrorResult> {
  const read = async (conn: ResolvedConnInfo, held: pg.Client | undefined, label: string) => {
    // The digests are text built from bytes, names and grants: no session setting changes them.
    const c = held ?? (await connect(conn, { label, settings: { ...CANONICAL_SETTINGS } }));
    try {
      return await digests(c, !o.noOwner, !o.noPrivileges);
    } catch (err) {
      throw operationError(err, `reading large objects on ${label}`);
    } finally {
      if (!held) await c.end().catch(() => {});
    }
  };
  const [src, tgt] = await Promise.all([read(o.source, o.sessions?.source, 'the source'), read(o.target, o.sessions?.target, 'the target')]);
  const changed = [...src].filter(([oid, d]) => tgt.get(oid) !== d).map(([oid]) => oid);
  const gone = [...tgt.keys()].filter((oid) => !src.has(oid));
  if (!changed.length && !gone.length) return { copied: 0, removed: 0, bytes: 0 };
  const r = await copyLargeObjects({ ...o, oids: changed, unlink: gone });
  return { copied: changed.length ? r.count : 0, removed: gone.length, bytes: r.bytes };
}
