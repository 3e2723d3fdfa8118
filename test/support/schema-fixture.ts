/**
 * A source schema with every object kind schema copy handles, mixed-case and quoted names, and
 * column types from extensions (citext, hstore: both ship with the embedded 14 and 18 binaries).
 */
export const RICH_SCHEMA = `
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
DO $$ BEGIN CREATE ROLE pgferry_reader_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA "Sales Ops";
COMMENT ON SCHEMA "Sales Ops" IS 'sales; it''s quoted';
CREATE TYPE "Sales Ops"."Order Status" AS ENUM ('new', 'paid', 'it''s shipped');
CREATE TYPE public.money_pair AS (amount numeric(12,2), currency char(3));
CREATE FUNCTION public.is_positive(v numeric) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT v > 0 $$;
CREATE DOMAIN public.positive_amount AS numeric(12,2) NOT NULL CONSTRAINT amount_positive CHECK (public.is_positive(VALUE));
CREATE TYPE public.float_range AS RANGE (subtype = float8, subtype_diff = float8mi);
CREATE SEQUENCE public.invoice_no AS integer START WITH 1000 INCREMENT BY 5 CACHE 1;
CREATE FUNCTION "Sales Ops"."Next Code"() RETURNS text LANGUAGE sql AS $$ SELECT 'C-' || nextval('public.invoice_no') $$;

CREATE TABLE "Sales Ops"."Customers" (
  "Id" bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 2) PRIMARY KEY,
  email public.citext NOT NULL,
  "Display Name" text COLLATE "C" DEFAULT 'anonymous',
  attrs public.hstore,
  code text NOT NULL DEFAULT "Sales Ops"."Next Code"(),
  created timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE "Sales Ops"."Customers" IS 'customers';
COMMENT ON COLUMN "Sales Ops"."Customers".email IS 'case-insensitive';
CREATE UNIQUE INDEX "Customers email" ON "Sales Ops"."Customers" (email);
CREATE INDEX customers_attrs ON "Sales Ops"."Customers" USING gin (attrs);

CREATE TABLE public.orders (
  id serial PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES "Sales Ops"."Customers" ("Id"),
  status "Sales Ops"."Order Status" NOT NULL DEFAULT 'new',
  amount public.positive_amount,
  price public.money_pair,
  window_ public.float_range,
  qty int CHECK (qty > 0),
  total numeric GENERATED ALWAYS AS (qty * 2) STORED,
  note varchar(40),
  CONSTRAINT orders_note_unique UNIQUE (note),
  CONSTRAINT orders_customer_id UNIQUE (customer_id, id) INCLUDE (qty) WITH (fillfactor = 80) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX orders_lower_note ON public.orders (lower(note)) WHERE note IS NOT NULL;
GRANT SELECT, INSERT ON public.orders TO pgferry_reader_role;

CREATE TABLE public.measurements (
  id bigint NOT NULL,
  taken date NOT NULL,
  reading float8,
  PRIMARY KEY (id, taken)
) PARTITION BY RANGE (taken);
CREATE TABLE public.measurements_2025 PARTITION OF public.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.measurements_rest PARTITION OF public.measurements DEFAULT;
CREATE INDEX measurements_reading ON public.measurements (reading);

CREATE TABLE public.audit (at timestamptz NOT NULL DEFAULT now(), message text);
ALTER TABLE public.audit REPLICA IDENTITY FULL;
CREATE TABLE public.codes (code text NOT NULL, label text);
CREATE UNIQUE INDEX codes_code ON public.codes (code);
ALTER TABLE public.codes REPLICA IDENTITY USING INDEX codes_code;
CREATE TABLE public.bookings (id int PRIMARY KEY, room int, during tsrange, EXCLUDE USING gist (during WITH &&));

CREATE FUNCTION public.touch_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.audit (message) VALUES (TG_OP || ' on orders'); RETURN NEW; END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION public.touch_audit();
CREATE PROCEDURE public.close_orders() LANGUAGE sql AS $$ UPDATE public.orders SET status = 'paid' $$;
CREATE VIEW "Sales Ops"."Open Orders" AS SELECT o.id, c.email FROM public.orders o JOIN "Sales Ops"."Customers" c ON c."Id" = o.customer_id WHERE o.status = 'new';
COMMENT ON VIEW "Sales Ops"."Open Orders" IS 'not yet paid';
CREATE MATERIALIZED VIEW public.order_totals AS SELECT customer_id, count(*) AS n FROM public.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_totals_customer ON public.order_totals (customer_id);
`;

/** Rows for {@link RICH_SCHEMA}. */
export const RICH_DATA = `
INSERT INTO "Sales Ops"."Customers" (email, "Display Name", attrs) SELECT 'User' || g || '@Example.com', 'name ' || g, hstore('k', g::text) FROM generate_series(1, 200) g;
INSERT INTO public.orders (customer_id, amount, price, window_, qty, note)
  SELECT 100 + 2 * (g % 200), g + 0.5, ROW(g::numeric(12,2), 'EUR')::public.money_pair, public.float_range(g, g + 1), g % 7 + 1, 'note ' || g FROM generate_series(1, 1000) g;
INSERT INTO public.measurements SELECT g, date '2025-01-01' + g, g / 3.0 FROM generate_series(1, 600) g;
INSERT INTO public.codes SELECT 'c' || g, 'label' FROM generate_series(1, 50) g;
INSERT INTO public.bookings SELECT g, g, tsrange(timestamp '2026-01-01' + g * interval '1 day', timestamp '2026-01-01' + (g + 1) * interval '1 day') FROM generate_series(1, 30) g;
REFRESH MATERIALIZED VIEW public.order_totals;
`;

/** The tables of {@link RICH_SCHEMA}, as FROM-able names for fingerprints. */
export const RICH_TABLES = ['"Sales Ops"."Customers"', 'public.orders', 'public.measurements', 'public.audit', 'public.codes', 'public.bookings'];

/**
 * Table `public.slow` with `rows` rows and an expression index on `public.slow_id(id)`, a function
 * that takes 10 ms a call: building that index, or ANALYZE of the table, takes `rows` x 10 ms. A
 * stand-in for a big table's work (the sleep is the workload, never synchronisation). The
 * function is used by a column default, so schema copy creates it in pre-data and the index may
 * build during the copy.
 */
export function slowTable(rows: number): string {
  return `
    CREATE FUNCTION public.slow_id(i int) RETURNS int IMMUTABLE LANGUAGE sql AS $$ SELECT i + 0 * length(pg_sleep(0.01)::text) $$;
    CREATE TABLE public.slow (id int PRIMARY KEY, d int DEFAULT public.slow_id(0));
    CREATE INDEX slow_expr ON public.slow (public.slow_id(id));
    INSERT INTO public.slow SELECT g, 0 FROM generate_series(1, ${rows}) g;`;
}

/**
 * A hand-made foreign key on the target that fires during apply (`ENABLE ALWAYS`, so also under
 * `session_replication_role = replica`): inserting into `child` needs the `parent` row whose id is
 * in `column`. It sees the order apply sends changes in, which batching may change across tables.
 */
export function alwaysParentCheck(child: string, column: string, parent: string): string {
  return `
CREATE FUNCTION check_${child}_${column}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM public.${parent} WHERE id = NEW.${column}) THEN
    RAISE foreign_key_violation USING MESSAGE = format('${column} %s does not exist', NEW.${column});
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER ${child}_${column} BEFORE INSERT ON ${child} FOR EACH ROW EXECUTE FUNCTION check_${child}_${column}();
ALTER TABLE ${child} ENABLE ALWAYS TRIGGER ${child}_${column};`;
}
