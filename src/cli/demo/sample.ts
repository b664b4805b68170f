/**
 * The demo's sample database: a small shop with the shapes a real migration
 * meets — foreign keys, a jsonb events table, a keyless table with REPLICA
 * IDENTITY FULL, sequences, a generated column, and an ENUM.
 */

export interface SampleSize {
  customers: number;
  products: number;
  orders: number;
  events: number;
}

export const DEFAULT_SAMPLE: SampleSize = { customers: 2000, products: 200, orders: 10000, events: 20000 };

export function sampleSchemaSql(n: SampleSize = DEFAULT_SAMPLE): string {
  return `
SELECT setseed(0.42);

CREATE TYPE order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');

CREATE TABLE customers (
  id         bigserial PRIMARY KEY,
  email      text NOT NULL UNIQUE,
  name       text NOT NULL,
  country    char(2) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
  id          serial PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  title       text NOT NULL,
  price       numeric(10,2) NOT NULL CHECK (price >= 0),
  attributes  jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers(id),
  status      order_status NOT NULL DEFAULT 'new',
  placed_at   timestamptz NOT NULL DEFAULT now(),
  note        text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);

CREATE TABLE order_items (
  order_id   bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  line       int NOT NULL,
  product_id int NOT NULL REFERENCES products(id),
  quantity   int NOT NULL CHECK (quantity > 0),
  unit_price numeric(10,2) NOT NULL,
  total      numeric(12,2) GENERATED ALWAYS AS (quantity * unit_price) STORED,
  PRIMARY KEY (order_id, line)
);

CREATE TABLE events (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind    text NOT NULL,
  payload jsonb NOT NULL
);
CREATE INDEX events_kind_at_idx ON events (kind, at);

-- An append-mostly log without any key: replicated with the whole old row as identity.
CREATE TABLE audit_log (
  at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  actor  text NOT NULL,
  action text NOT NULL
);
ALTER TABLE audit_log REPLICA IDENTITY FULL;

CREATE SEQUENCE invoice_number_seq START 100000;

INSERT INTO customers (email, name, country, created_at)
SELECT 'customer' || g || '@example.com', 'Customer ' || g,
       (ARRAY['DE','FR','NL','US','JP','BR'])[1 + g % 6],
       now() - (g || ' hours')::interval
  FROM generate_series(1, ${n.customers}) g;

INSERT INTO products (sku, title, price, attributes)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, round((1 + random() * 199)::numeric, 2),
       jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + g % 3], 'weight_g', 50 + g % 900)
  FROM generate_series(1, ${n.products}) g;

INSERT INTO orders (customer_id, status, placed_at)
SELECT 1 + (g * 7919) % ${n.customers}, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4]::order_status,
       now() - ((${n.orders} - g) || ' minutes')::interval
  FROM generate_series(1, ${n.orders}) g;

INSERT INTO order_items (order_id, line, product_id, quantity, unit_price)
SELECT o.id, l, 1 + (o.id * 31 + l) % ${n.products}, 1 + (o.id + l) % 5, 9.99 + ((o.id + l) % 50)
  FROM orders o CROSS JOIN generate_series(1, 3) l;

INSERT INTO events (kind, payload, at)
SELECT (ARRAY['page_view','add_to_cart','checkout'])[1 + g % 3],
       jsonb_build_object('session', md5(g::text), 'path', '/p/' || (g % 500), 'ms', g % 1000),
       now() - ((${n.events} - g) || ' seconds')::interval
  FROM generate_series(1, ${n.events}) g;

INSERT INTO audit_log (actor, action)
SELECT 'user' || (g % 20), 'login' FROM generate_series(1, 500) g;

SELECT setval('invoice_number_seq', 100000 + ${n.orders});
ANALYZE;
`;
}

/** Tables the demo watches while rows arrive on the target. */
export const WATCHED_TABLES = ['orders', 'order_items', 'events', 'audit_log'] as const;
