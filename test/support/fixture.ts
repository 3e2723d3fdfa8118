import type pg from 'pg';

/**
 * A schema with every table kind that breaks naive replicators, created on source and target
 * (plus {@link SOURCE_EXTRAS} and {@link TARGET_EXTRAS} on each side).
 */
export const FIXTURE_SCHEMA = `
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Order Items" ("Order Id" int, "Line No" int, "Qty" int NOT NULL, note text, PRIMARY KEY ("Order Id", "Line No"));
CREATE TABLE kv (
  id bigint PRIMARY KEY, big text, small int, ts timestamptz, tsx timestamp, n numeric, f float8, r real, b bytea,
  j json, jb jsonb, arr int[], iv interval, d date, flag boolean, u uuid, ip inet, m money, c char(5)
);
CREATE TABLE dup (a int, b text);
ALTER TABLE dup REPLICA IDENTITY FULL;
CREATE TABLE gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, x int, doubled int GENERATED ALWAYS AS (x * 2) STORED);
CREATE TABLE part (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE par (id int PRIMARY KEY, v text);
CREATE TABLE chi (extra int) INHERITS (par);
ALTER TABLE chi ADD PRIMARY KEY (id);
CREATE TABLE ident_doc (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, doc text);
CREATE TABLE trunc_me (id int PRIMARY KEY, v text);
CREATE TABLE uidx (code text NOT NULL, v int);
CREATE UNIQUE INDEX uidx_code ON uidx (code);
ALTER TABLE uidx REPLICA IDENTITY USING INDEX uidx_code;
CREATE TABLE bulk (id int PRIMARY KEY, payload text);
`;

/** Source-only DDL: partitions named differently from the target's. */
export const SOURCE_EXTRAS = `
CREATE TABLE part_eu PARTITION OF part FOR VALUES IN ('eu');
CREATE TABLE part_us PARTITION OF part FOR VALUES IN ('us');
`;

/**
 * Target-only DDL: the same partitioned table split differently (rows travel through the root),
 * and a trigger that would corrupt `kv` if it fired during apply.
 */
export const TARGET_EXTRAS = `
CREATE TABLE part_target_eu PARTITION OF part FOR VALUES IN ('eu');
CREATE TABLE part_target_us PARTITION OF part FOR VALUES IN ('us');
CREATE FUNCTION corrupt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.small := -1; RETURN NEW; END $$;
CREATE TRIGGER corrupt BEFORE INSERT OR UPDATE ON kv FOR EACH ROW EXECUTE FUNCTION corrupt();
`;

/** Every table as a FROM-able name, for fingerprints. */
export const FIXTURE_TABLES = ['"My Schema"."Order Items"', 'kv', 'dup', 'gen', 'part', 'trunc_me', 'uidx', 'bulk', 'ONLY par', 'chi', 'ident_doc'];

/** Incompressible-enough text stored out of line (TOAST). */
const BIG = `(SELECT string_agg(md5(random()::text || g), '') FROM generate_series(1, 200) g)`;

const SPECIAL_VALUES = `
  'NaN'::numeric, '-0'::float8, 'Infinity'::real, '\\x00ff10'::bytea, '{ "b" : 1,  "a":2, "a": 3 }'::json, '{"z": [1, 2.50], "a": null}'::jsonb,
  '{{1,NULL},{3,4}}'::int[], '1 mon 2 days 03:04:05.678901'::interval, 'infinity'::date, true,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '10.1.2.3/8'::inet, 12.34::money, 'ab'::char(5)`;

/** Seeds the source: `rows` kv rows with TOASTed text and the special values, plus some of everything. */
export async function seedFixture(client: pg.Client, rows: number): Promise<void> {
  await client.query(`INSERT INTO kv SELECT g, ${BIG}, g, '2026-01-01 12:34:56.123456+05'::timestamptz + g * interval '1 second',
      '2026-01-01 12:34:56.654321'::timestamp, g / 7.0, g / 3.0, g / 9.0, decode(md5(g::text), 'hex'), '{"k": 1}', '{"g": 1}',
      ARRAY[g, NULL], interval '1 day', date '2026-01-01', false, NULL, '::1', 0, 'x'
    FROM generate_series(1, $1) g`, [rows]);
  await client.query(`INSERT INTO kv (id, ts, n, f, r, b, j, jb, arr, iv, d, flag, u, ip, m, c)
      VALUES (0, '2026-06-30 23:59:59.999999+00', ${SPECIAL_VALUES})`);
  await client.query(`INSERT INTO "My Schema"."Order Items" SELECT g / 3, g % 3, g, 'n' || g FROM generate_series(1, 3000) g`);
  await client.query(`INSERT INTO dup SELECT g % 50, 'dup' FROM generate_series(1, 200) g`);
  await client.query(`INSERT INTO gen (x) SELECT g FROM generate_series(1, 500) g`);
  await client.query(`INSERT INTO part SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 2000) g`);
  await client.query(`INSERT INTO trunc_me SELECT g, 't' FROM generate_series(1, 100) g`);
  await client.query(`INSERT INTO uidx SELECT 'code' || g, g FROM generate_series(1, 300) g`);
  await client.query(`INSERT INTO par SELECT g, 'parent' FROM generate_series(1, 100) g`);
  await client.query(`INSERT INTO chi SELECT g, 'child', g FROM generate_series(101, 200) g`);
  await client.query(`INSERT INTO ident_doc (doc) SELECT ${BIG} FROM generate_series(1, 50)`);
}

/**
 * One source transaction of mixed changes, deterministic in `n`: TOAST-unchanged updates, key
 * changes, composite and quoted keys, duplicate rows without a key, generated and identity columns,
 * cross-partition moves, replica identity index updates and an occasional TRUNCATE.
 */
export async function fixtureTransaction(client: pg.Client, n: number): Promise<void> {
  const k = 1_000_000 + n;
  await client.query('BEGIN');
  try {
    await client.query(`INSERT INTO kv (id, big, small, ts, n, f, r, b, j, jb, arr, iv, d, flag, u, ip, m, c)
        VALUES ($1, ${BIG}, $2, now(), ${SPECIAL_VALUES})`, [k, n]);
    await client.query(`UPDATE kv SET small = small + 1 WHERE id = $1`, [(n % 200) + 1]); // big stays unchanged ('u')
    if (n % 5 === 0) await client.query(`UPDATE kv SET id = id + 5000000 WHERE id = $1`, [k]); // key change
    if (n % 7 === 0) await client.query(`DELETE FROM kv WHERE id = $1`, [(n % 200) + 201]);
    await client.query(`UPDATE "My Schema"."Order Items" SET "Qty" = "Qty" + 1, "Line No" = "Line No" + 10 WHERE "Order Id" = $1 AND "Line No" < 10`, [n % 1000]);
    await client.query(`INSERT INTO "My Schema"."Order Items" VALUES ($1, 1, 1, NULL)`, [10_000 + n]);
    await client.query(`INSERT INTO dup VALUES ($1, 'dup'), ($1, 'dup')`, [n % 50]);
    await client.query(`DELETE FROM dup WHERE ctid = (SELECT ctid FROM dup WHERE a = $1 LIMIT 1)`, [n % 50]);
    await client.query(`UPDATE dup SET b = 'changed' WHERE ctid = (SELECT ctid FROM dup WHERE a = $1 AND b = 'dup' LIMIT 1)`, [(n + 1) % 50]);
    await client.query(`INSERT INTO gen (x) VALUES ($1)`, [n]);
    await client.query(`UPDATE gen SET x = x + 1 WHERE id = $1`, [(n % 500) + 1]);
    await client.query(`UPDATE part SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, v = v + 1 WHERE id = $1`, [(n % 2000) + 1]);
    await client.query(`UPDATE uidx SET code = code || 'x', v = v + 1 WHERE code = (SELECT min(code) FROM uidx)`);
    // Without ONLY this touches the parent and its inheritance child: two relations in the stream.
    await client.query(`UPDATE par SET v = v || '.' WHERE id IN ($1, $2)`, [(n % 100) + 1, (n % 100) + 101]);
    await client.query(`INSERT INTO chi VALUES ($1, 'new child', $1)`, [k]);
    // Only an unchanged TOAST value and an identity column: nothing to assign on the target.
    await client.query(`UPDATE ident_doc SET doc = doc WHERE id = $1`, [(n % 50) + 1]);
    if (n % 10 === 9) await client.query(`TRUNCATE ONLY par`); // must not empty chi on the target
    if (n % 25 === 24) {
      await client.query(`TRUNCATE trunc_me`);
      await client.query(`INSERT INTO trunc_me SELECT g, 'again ' || $1 FROM generate_series(1, 10) g`, [n]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** A single transaction of `rows` inserts into `bulk`, ids starting at `from`. */
export async function bigTransaction(client: pg.Client, from: number, rows: number): Promise<void> {
  await client.query(`INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series($1::int, $1::int + $2::int - 1) g`, [from, rows]);
}

/** Runs fixture transactions on its own connection until stopped. */
export function startWriter(connect: () => Promise<pg.Client>): { stop(): Promise<number> } {
  let running = true;
  let n = 0;
  const done = (async () => {
    const client = await connect();
    try {
      while (running) await fixtureTransaction(client, n++);
    } finally {
      await client.end();
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return n;
    },
  };
}
