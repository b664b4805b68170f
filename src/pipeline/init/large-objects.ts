/**
 * Large objects, read under the copy's snapshot and written to the target in
 * one transaction (so an interrupted copy leaves none half-written and a rerun
 * starts clean), with owner, comment and grants. Logical replication does not
 * carry large objects: what init copies is what the target has.
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
  snapshot: string;
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
    await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(o.snapshot)}`);
    const { rows: objects } = await src.query<{ oid: string; owner: string; comment: string | null; grants: { grantee: string; privilege: string; grantable: boolean }[] | null }>(
      `SELECT m.oid::text AS oid, pg_get_userbyid(m.lomowner) AS owner, obj_description(m.oid, 'pg_largeobject') AS comment,
              (SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                                 'privilege', a.privilege_type, 'grantable', a.is_grantable))
                 FROM aclexplode(m.lomacl) a WHERE a.grantee <> m.lomowner) AS grants
         FROM pg_largeobject_metadata m ORDER BY m.oid`,
    );
    if (!objects.length) return { count: 0, bytes: 0 };
    tgt = await connect(o.target, { label: 'the target' });
    await tgt.query('BEGIN');
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
