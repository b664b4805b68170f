/**
 * WAL positions. "Where is the source now?" must include every committed
 * transaction — also those committed with synchronous_commit = off, whose
 * commit records may still sit in WAL buffers: pg_current_wal_lsn() (the
 * write position) can lag behind them by up to three wal_writer_delay
 * periods, which would let "in sync" or a verify recheck come too early.
 * The insert position includes them. It points past a page header when WAL
 * ends at a page boundary, where the flushed position (and so what a
 * subscriber can ever confirm) stops at the boundary: no record ends inside a
 * header, so such a position is moved back to the page start.
 */

/** SQL expression (pg_lsn): the end of all WAL inserted so far; the replay position on a standby. Works on 12+. */
export const WAL_END_SQL = `(
  SELECT (to_hex(floor(a.b / 4294967296)::bigint) || '/' || to_hex((a.b % 4294967296)::bigint))::pg_lsn
    FROM (SELECT CASE WHEN n.b % n.blk IN (24, 40) THEN n.b - n.b % n.blk ELSE n.b END AS b
            FROM (SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END, '0/0') AS b,
                         current_setting('wal_block_size')::numeric AS blk) n) a)`;

/** "16/B374D848" → bytes. */
export function lsnToBigInt(lsn: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(lsn.trim());
  if (!m) throw new Error(`not a WAL position: "${lsn}"`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

export function formatLsn(n: bigint): string {
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}
