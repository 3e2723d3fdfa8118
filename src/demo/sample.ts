import pg from 'pg';

/** The demo's schema: created identically on source and target (schema copy is a later feature). */
export const SAMPLE_SCHEMA = `
CREATE TABLE customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  email text,
  signed_up timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  amount numeric(12, 2) NOT NULL,
  status text NOT NULL DEFAULT 'new',
  note text
);
CREATE TABLE order_lines (
  order_id bigint NOT NULL,
  line_no int NOT NULL,
  sku text NOT NULL,
  qty int NOT NULL,
  PRIMARY KEY (order_id, line_no)
);
CREATE TABLE events (
  id bigint NOT NULL,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb,
  PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE audit_log (at timestamptz NOT NULL DEFAULT now(), message text);
ALTER TABLE audit_log REPLICA IDENTITY FULL;
`;

/** Fills the source with `customers` customers and about three orders each. */
export async function fillSample(client: pg.Client, customers: number): Promise<void> {
  await client.query(`INSERT INTO customers (name, email) SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, $1) g`, [customers]);
  await client.query(`INSERT INTO orders (customer_id, amount, note) SELECT 1 + (g % $1), (g % 1000) + 0.99, repeat('x', g % 50) FROM generate_series(1, $1 * 3) g`, [customers]);
  await client.query(`INSERT INTO order_lines SELECT o.id, l, 'SKU-' || (o.id * l % 997), l FROM orders o, generate_series(1, 2) l`);
  await client.query(`INSERT INTO events SELECT g, timestamptz '2025-06-01 00:00:00.123456+00' + g * interval '1 minute', 'seed', jsonb_build_object('n', g) FROM generate_series(1, $1) g`, [customers]);
}

/**
 * One transaction of application-like writes: new orders with lines, updates, deletes, events
 * that move between partitions, and audit rows in a table without a key.
 */
export async function writeSampleTransaction(client: pg.Client, n: number): Promise<void> {
  await client.query('BEGIN');
  try {
    const { rows: [o] } = await client.query<{ id: string }>(
      `INSERT INTO orders (customer_id, amount, note) VALUES ((SELECT max(id) FROM customers) - $1 % 100, $1 % 500 + 0.5, 'live') RETURNING id`,
      [n],
    );
    await client.query(`INSERT INTO order_lines VALUES ($1, 1, 'SKU-live', 1), ($1, 2, 'SKU-live', 2)`, [o!.id]);
    await client.query(`UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id = (SELECT min(id) + $1 % 1000 FROM orders)`, [n]);
    await client.query(`UPDATE order_lines SET qty = qty + 1 WHERE order_id = $1 AND line_no = 1`, [o!.id]);
    if (n % 3 === 0) await client.query(`DELETE FROM order_lines WHERE (order_id, line_no) = (SELECT order_id, line_no FROM order_lines ORDER BY order_id LIMIT 1)`);
    await client.query(
      `INSERT INTO events VALUES ($1 + 1000000, timestamptz '2025-12-31 23:59:59.999999+00', 'live', '{"a": [1, 2.50]}')`,
      [n],
    );
    // Moves the row across partitions: a delete from 2025 and an insert into 2026 at the source.
    if (n % 2 === 0) await client.query(`UPDATE events SET at = at + interval '1 day' WHERE id = $1 + 1000000`, [n]);
    await client.query(`INSERT INTO audit_log (message) VALUES ('write ' || $1)`, [n]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * A fingerprint of every table's content: row count and md5 of all rows in text form, ordered.
 * Identical fingerprints mean identical data (as the target's text output sees it).
 */
export async function fingerprint(client: pg.Client, tables: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await client.query(`SET TimeZone = 'UTC'; SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3`);
  for (const t of tables) {
    const { rows: [r] } = await client.query<{ n: string; h: string | null }>(`SELECT count(*) AS n, md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM ${t} x`);
    out[t] = `${r!.n} rows ${r!.h ?? ''}`;
  }
  return out;
}
