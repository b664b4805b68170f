/**
 * The demo's application: keeps writing to the source while pgferry copies
 * and replicates — new orders with items, status changes, cancellations that
 * delete rows (cascading to items), events, price changes and audit rows
 * (updates and deletes on a keyless table).
 */
import type pg from 'pg';
import { connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';

export interface DemoWriter {
  /** Transactions committed so far. */
  readonly commits: number;
  /** Stop after the current transaction; resolves with the number of commits. */
  stop(): Promise<number>;
}

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

async function step(c: pg.Client, i: number, products: number): Promise<void> {
  await c.query('BEGIN');
  const { rows } = await c.query<{ id: string }>(
    "INSERT INTO orders (customer_id, status, note) VALUES ((SELECT id FROM customers ORDER BY id DESC OFFSET $1 LIMIT 1), 'new', 'invoice ' || nextval('invoice_number_seq')) RETURNING id",
    [rnd(100)],
  );
  const orderId = rows[0]!.id;
  const lines = 1 + rnd(3);
  for (let l = 1; l <= lines; l++) {
    await c.query(
      'INSERT INTO order_items (order_id, line, product_id, quantity, unit_price) SELECT $1, $2, id, $3, price FROM products WHERE id = $4',
      [orderId, l, 1 + rnd(5), 1 + rnd(products)],
    );
  }
  await c.query(
    "UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid'::order_status WHEN 'paid' THEN 'shipped'::order_status ELSE status END WHERE id = (SELECT max(id) - $1 FROM orders)",
    [rnd(200)],
  );
  if (i % 5 === 0) {
    await c.query('DELETE FROM orders WHERE id = (SELECT min(id) + $1 FROM orders)', [rnd(500)]);
  }
  await c.query("INSERT INTO events (kind, payload) VALUES ($1, jsonb_build_object('order', $2::bigint, 'step', $3::int))", [
    ['checkout', 'page_view', 'add_to_cart'][i % 3],
    orderId,
    i,
  ]);
  if (i % 3 === 0) await c.query('UPDATE products SET price = price + 0.01 WHERE id = $1', [1 + rnd(products)]);
  await c.query("INSERT INTO audit_log (actor, action) VALUES ($1, 'order ' || $2)", [`user${rnd(20)}`, orderId]);
  if (i % 4 === 0) {
    await c.query("UPDATE audit_log SET action = action || ' (seen)' WHERE ctid = (SELECT ctid FROM audit_log WHERE actor = $1 LIMIT 1)", [`user${rnd(20)}`]);
  }
  if (i % 7 === 0) {
    await c.query('DELETE FROM audit_log WHERE ctid = (SELECT ctid FROM audit_log WHERE actor = $1 LIMIT 1)', [`user${rnd(20)}`]);
  }
  await c.query('COMMIT');
}

/** Start writing; about 1000 / pauseMs transactions per second at most. */
export async function startDemoWriter(conn: ResolvedConnInfo, pauseMs = 20): Promise<DemoWriter> {
  const client = await connect(conn, { label: 'the demo source', applicationName: 'pgferry-demo-writer' });
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM products');
  const products = rows[0]!.n;
  let commits = 0;
  let stopping = false;
  let failure: unknown;
  const loop = (async () => {
    for (let i = 1; !stopping; i++) {
      try {
        await step(client, i, products);
        commits++;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        failure = err;
        return;
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return {
    get commits() {
      return commits;
    },
    async stop() {
      stopping = true;
      await loop;
      await client.end().catch(() => {});
      if (failure) throw failure;
      return commits;
    },
  };
}
