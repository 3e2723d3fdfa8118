import { describe, expect, it } from 'vitest';
import { buildSchema, columnDefinition, createTable, indexStatement } from '../../../src/schema/ddl.js';
import { emptyCatalog, type CatalogColumn, type CatalogTable, type SchemaCatalog } from '../../../src/schema/model.js';
import { planSchema, renderPlan, scopeCatalog } from '../../../src/schema/plan.js';

const col = (name: string, type: string, extra: Partial<CatalogColumn> = {}): CatalogColumn => ({
  name, type, collation: null, notNull: false, defaultExpr: null, identity: '', identitySequence: null, generated: '', generatedExpr: null, isLocal: true, comment: null, ...extra,
});

const table = (schema: string, name: string, columns: CatalogColumn[], extra: Partial<CatalogTable> = {}): CatalogTable => ({
  schema, name, kind: 'r', unlogged: false, columns, partitionKey: null, partitionOf: null, inherits: [], replicaIdentity: 'd', replicaIdentityIndex: null, options: [],
  owner: 'app', grants: [], comment: null, ...extra,
});

function catalog(extra: Partial<SchemaCatalog>): SchemaCatalog {
  return { ...emptyCatalog(), serverMajor: 14, ...extra };
}

const facts = { availableExtensions: new Set(['citext']), roles: new Set(['app', 'postgres']), currentUser: 'postgres', assignableOwners: new Set(['app', 'postgres']), ownerPrivileges: new Set(['app', 'postgres']), superuser: true, schemaCreators: new Map<string, Set<string>>() };

describe('schema DDL (pure)', () => {
  it('quotes every identifier and writes identity, generated, collation, default and NOT NULL', () => {
    expect(columnDefinition(col('Display Name', 'text', { collation: 'pg_catalog."C"', defaultExpr: "'x'::text", notNull: true }))).toBe(
      `"Display Name" text COLLATE pg_catalog."C" DEFAULT 'x'::text NOT NULL`,
    );
    expect(columnDefinition(col('total', 'numeric', { generated: 's', generatedExpr: '(qty * 2)' }))).toBe('"total" numeric GENERATED ALWAYS AS ((qty * 2)) STORED');
    const identity = col('Id', 'bigint', {
      identity: 'a', notNull: true,
      identitySequence: { schema: 'My S', name: 'T_Id_seq', dataType: 'bigint', start: '100', increment: '2', min: '1', max: '9223372036854775807', cache: '1', cycle: false },
    });
    expect(columnDefinition(identity)).toBe(
      '"Id" bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "My S"."T_Id_seq" START WITH 100 INCREMENT BY 2 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE) NOT NULL',
    );
  });

  it('creates partitions with PARTITION OF and inheritance children with their own columns only', () => {
    expect(createTable(table('public', 'm_2025', [col('id', 'int')], { partitionOf: { schema: 'public', name: 'm', bound: "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')" } }))).toBe(
      `CREATE TABLE "public"."m_2025" PARTITION OF "public"."m" FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
    );
    const child = table('public', 'chi', [col('id', 'integer', { isLocal: false }), col('extra', 'integer')], { inherits: [{ schema: 'public', name: 'par' }] });
    expect(createTable(child)).toBe('CREATE TABLE "public"."chi" (\n  "extra" integer\n) INHERITS ("public"."par")');
    expect(indexStatement('CREATE INDEX i ON ONLY public.m USING btree (x)', true)).toBe('CREATE INDEX i ON public.m USING btree (x)');
  });

  it('orders pre-data before post-data, adds foreign keys NOT VALID then validates them on their own', () => {
    const built = buildSchema(catalog({
      schemas: [{ name: 'Sales', owner: 'app', grants: [], comment: 'it\'s sales' }],
      extensions: [{ name: 'citext', schema: 'public', version: '1.6' }],
      tables: [table('Sales', 'Orders', [col('id', 'integer', { notNull: true }), col('customer', 'integer')])],
      constraints: [
        { schema: 'Sales', table: 'Orders', name: 'Orders_pkey', type: 'p', def: 'PRIMARY KEY (id)', validated: true, local: true, onPartitioned: false, replicaIdentity: false, indexDef: 'CREATE UNIQUE INDEX "Orders_pkey" ON "Sales"."Orders" USING btree (id)', indexName: 'Orders_pkey', references: null, comment: null },
        { schema: 'Sales', table: 'Orders', name: 'fk', type: 'f', def: 'FOREIGN KEY (customer) REFERENCES "Sales"."Customers"(id)', validated: true, local: true, onPartitioned: false, replicaIdentity: false, indexDef: null, indexName: null, references: { schema: 'Sales', name: 'Customers' }, comment: null },
      ],
    }));
    const plan = planSchema(built, null, null);
    const pre = plan.preData.flatMap((o) => o.statements);
    expect(pre[0]).toBe('CREATE SCHEMA "Sales"');
    expect(pre[1]).toBe('CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "public"');
    const post = plan.postData;
    // Keys are built after the data, like every other index, and before the foreign keys that need them.
    expect(pre.some((s) => s.includes('PRIMARY KEY'))).toBe(false);
    // As a unique index (built beside the table's other indexes), then attached as the key.
    const pkey = post.findIndex((o) => o.key === 'constraint "Orders_pkey" on table "Sales"."Orders"');
    expect(post[pkey]!.statements).toEqual([
      'CREATE UNIQUE INDEX IF NOT EXISTS "Orders_pkey" ON "Sales"."Orders" USING btree (id)',
      'ALTER TABLE ONLY "Sales"."Orders" ADD CONSTRAINT "Orders_pkey" PRIMARY KEY USING INDEX "Orders_pkey"',
    ]);
    expect(post[pkey]!.lock).toEqual({ family: 'table "Sales"."Orders"', shared: true });
    expect(post.findIndex((o) => o.statements[0]!.endsWith('NOT VALID'))).toBeGreaterThan(pkey);
    const fk = post.findIndex((o) => o.statements[0]!.endsWith('NOT VALID'));
    const validate = post.findIndex((o) => o.statements[0] === 'ALTER TABLE "Sales"."Orders" VALIDATE CONSTRAINT "fk"');
    expect(fk).toBeGreaterThanOrEqual(0);
    expect(validate).toBeGreaterThan(fk);
    // Run once streaming has started, before a cutover: the validation and ANALYZE, nothing else.
    expect(post.filter((o) => o.whileStreaming).map((o) => o.statements[0])).toEqual(['ALTER TABLE "Sales"."Orders" VALIDATE CONSTRAINT "fk"', 'ANALYZE "Sales"."Orders"']);
    expect(post.flatMap((o) => o.statements)).toContain(`COMMENT ON SCHEMA "Sales" IS 'it''s sales'`);
    expect(post.at(-1)!.statements).toEqual(['ANALYZE "Sales"."Orders"']);
    const script = renderPlan(plan, ['test']);
    expect(script.indexOf('pre-data')).toBeLessThan(script.indexOf('post-data'));
  });

  it('grants default privileges per creator, schema and grantee, revokes what PUBLIC lost of its defaults, and only where the target role may set them', () => {
    const g = (grantee: string, privilege: string, grantable = false) => ({ grantee, privilege, grantable });
    const built = buildSchema(catalog({
      defaultPrivileges: [
        { role: 'app', schema: 'Sales', kind: 'r', grants: [g('reader', 'SELECT'), g('writer', 'INSERT'), g('writer', 'UPDATE', true)], selfRevoked: [] },
        { role: 'app', schema: null, kind: 'f', grants: [g('PUBLIC', 'EXECUTE'), g('reader', 'EXECUTE')], selfRevoked: [] },
        { role: 'app', schema: null, kind: 'T', grants: [], selfRevoked: [] },
        { role: 'app', schema: null, kind: 'r', grants: [], selfRevoked: ['DELETE', 'TRUNCATE'] },
        { role: 'app', schema: null, kind: 'x', grants: [g('reader', 'SELECT')], selfRevoked: [] },
      ],
    }));
    const sales = 'ALTER DEFAULT PRIVILEGES FOR ROLE "app" IN SCHEMA "Sales"';
    expect(built.objects.map((o) => [o.label, o.statements])).toEqual([
      ['default privileges of role reader on TABLES created by role app in schema "Sales"', [`${sales} REVOKE ALL ON TABLES FROM "reader"`, `${sales} GRANT SELECT ON TABLES TO "reader"`]],
      ['default privileges of role writer on TABLES created by role app in schema "Sales"', [
        `${sales} REVOKE ALL ON TABLES FROM "writer"`,
        `${sales} GRANT INSERT ON TABLES TO "writer"`,
        `${sales} GRANT UPDATE ON TABLES TO "writer" WITH GRANT OPTION`,
      ]],
      ['default privileges of role reader on FUNCTIONS created by role app', ['ALTER DEFAULT PRIVILEGES FOR ROLE "app" REVOKE ALL ON FUNCTIONS FROM "reader"', 'ALTER DEFAULT PRIVILEGES FOR ROLE "app" GRANT EXECUTE ON FUNCTIONS TO "reader"']],
      ['default USAGE of PUBLIC on TYPES created by role app, revoked', ['ALTER DEFAULT PRIVILEGES FOR ROLE "app" REVOKE USAGE ON TYPES FROM PUBLIC']],
      ['default privileges of role app on TABLES created by role app, revoked from itself', ['ALTER DEFAULT PRIVILEGES FOR ROLE "app" REVOKE DELETE, TRUNCATE ON TABLES FROM "app"']],
    ]);
    expect(built.notes).toEqual(['default privileges on x created by role app are not copied (pgferry does not know this kind of object); set them on the target by hand']);

    const roles = new Set(['app', 'reader', 'writer', 'migrator']);
    const asMigrator = { ...facts, roles, currentUser: 'migrator', superuser: false, assignableOwners: new Set(['migrator']), ownerPrivileges: new Set(['migrator']) };
    const refused = planSchema(built, null, asMigrator);
    expect(refused.postData).toEqual([]);
    expect(refused.notes.filter((n) => n.startsWith('default privileges for'))).toEqual([
      'default privileges for role app are not copied: changing them needs role app\'s privileges, which role migrator lacks; run GRANT "app" TO "migrator" and pgferry schema again, or set them on the target by hand',
    ]);
    expect(planSchema(built, null, { ...asMigrator, ownerPrivileges: new Set(['migrator', 'app']) }).postData).toHaveLength(5);
    // A member without the role's privileges (NOINHERIT) may change them before PostgreSQL 16 only.
    const member = { ...asMigrator, assignableOwners: new Set(['migrator', 'app']) };
    expect(planSchema(built, { ...buildSchema(emptyCatalog()), serverMajor: 15 }, member).postData).toHaveLength(5);
    expect(planSchema(built, { ...buildSchema(emptyCatalog()), serverMajor: 16 }, member).notes).toContain(
      'default privileges for role app are not copied: changing them needs role app\'s privileges, which role migrator lacks; run GRANT "app" TO "migrator" WITH INHERIT TRUE (PostgreSQL 16+) or ALTER ROLE "migrator" INHERIT and pgferry schema again, or set them on the target by hand',
    );
    // Already so on the target: nothing to do, and no note even where the role could not change them.
    expect(planSchema(built, built, asMigrator)).toMatchObject({ postData: [], notes: [built.notes[0]] });
    expect(planSchema(built, null, { ...facts, roles: new Set(['app', 'reader']) }).postData.map((o) => o.label)).toEqual([
      'default privileges of role reader on TABLES created by role app in schema "Sales"',
      'default privileges of role reader on FUNCTIONS created by role app',
      'default USAGE of PUBLIC on TYPES created by role app, revoked',
      'default privileges of role app on TABLES created by role app, revoked from itself',
    ]);
  });

  it('builds a replica identity index after the data, then points the replica identity at it', () => {
    const built = buildSchema(catalog({
      tables: [table('public', 'u', [col('k', 'integer', { notNull: true })], { replicaIdentity: 'i', replicaIdentityIndex: 'u_k' })],
      indexes: [{ schema: 'public', table: 'u', name: 'u_k', def: 'CREATE UNIQUE INDEX u_k ON public.u USING btree (k)', primary: false, replicaIdentity: true, constraintBacked: false, inherited: false, onPartitioned: false, comment: null }],
    }));
    const { preData, postData } = planSchema(built, null, null);
    expect(preData.flatMap((o) => o.statements).join('\n')).not.toMatch(/INDEX|REPLICA IDENTITY/);
    const index = postData.findIndex((o) => o.key === 'index "public"."u_k"');
    const identity = postData.findIndex((o) => o.statements[0] === 'ALTER TABLE ONLY "public"."u" REPLICA IDENTITY USING INDEX "u_k"');
    expect(index).toBeGreaterThanOrEqual(0);
    expect(identity).toBeGreaterThan(index);
  });

  it('leaves matching objects alone, names the first difference, and names a missing extension', () => {
    const source = buildSchema(catalog({ extensions: [{ name: 'hstore', schema: 'public', version: '1.8' }], tables: [table('public', 'kv', [col('id', 'integer', { notNull: true }), col('v', 'text')])] }));
    const same = buildSchema(catalog({ tables: [table('public', 'kv', [col('id', 'integer', { notNull: true }), col('v', 'text')])] }));
    const differs = buildSchema(catalog({ tables: [table('public', 'kv', [col('id', 'integer', { notNull: true }), col('v', 'bigint')])] }));
    const ok = planSchema(source, same, { ...facts, availableExtensions: new Set(['hstore']) });
    expect(ok.conflicts).toEqual([]);
    expect(ok.preData.map((o) => o.label)).toEqual(['extension "hstore"']);
    const bad = planSchema(source, differs, facts);
    expect(bad.conflicts).toContain('target: extension hstore (used on the source) is not available on the target server; install the extension\'s package on the target server, or start with --schema-copy=false and create the schema yourself');
    expect(bad.conflicts).toContain('target: table "public"."kv" differs from the source (column "v": text on the source, bigint on the target); change or drop it on the target, or start with --schema-copy=false');
  });

  it('compares a view by its columns across major versions, and by its definition within one', () => {
    const view = (def: string, major: number) => buildSchema(catalog({ serverMajor: major, views: [{ schema: 'public', name: 'v', kind: 'v', def, columns: '"id" integer', options: [], owner: 'postgres', grants: [], comment: null, columnComments: [], readsForeign: false }] }));
    expect(planSchema(view(' SELECT t.id FROM public.t;', 14), view(' SELECT id FROM public.t;', 18), facts).conflicts).toEqual([]);
    expect(planSchema(view(' SELECT t.id FROM public.t;', 18), view(' SELECT t.id + 1 AS id FROM public.t;', 18), facts).conflicts).toHaveLength(1);
  });

  it('skips a partition whose parent already exists on the target, and owners and grants for missing roles', () => {
    const parent = table('public', 'part', [col('id', 'integer')], { kind: 'p', partitionKey: 'LIST (id)' });
    const partition = table('public', 'part_1', [col('id', 'integer', { isLocal: false })], { partitionOf: { schema: 'public', name: 'part', bound: 'FOR VALUES IN (1)' }, owner: 'ghost', grants: [{ grantee: 'ghost', privilege: 'SELECT', grantable: false }] });
    const plan = planSchema(buildSchema(catalog({ tables: [parent, partition] })), buildSchema(catalog({ tables: [parent] })), facts);
    expect(plan.conflicts).toEqual([]);
    expect(plan.preData).toEqual([]);
    expect(plan.notes.join('\n')).toContain('table "public"."part_1" is not created');
  });

  it('names foreign tables (and foreign partitions) in notes, and leaves out the views that read them', () => {
    const v = (name: string, readsForeign: boolean) => ({ schema: 'public', name, kind: 'v' as const, def: ' SELECT 1;', columns: '"x" integer', options: [], owner: 'app', grants: [], comment: null, columnComments: [], readsForeign });
    const built = buildSchema(catalog({
      foreignTables: [{ schema: 'public', name: 'remote', partitionOf: null }, { schema: 'public', name: 'm_old', partitionOf: 'public.m' }],
      views: [v('over_remote', true), v('local', false)],
    }));
    expect(built.notes).toEqual([
      'foreign table "public"."remote" is not copied: its rows live on another server, and pgferry migrates neither it nor its server and user mappings; create them on the target by hand',
      'foreign table "public"."m_old" is not copied (a partition of public.m, which pgferry cannot migrate with it): its rows live on another server, and pgferry migrates neither it nor its server and user mappings; create them on the target by hand',
      'view "public"."over_remote" is not copied: it reads a foreign table; create it on the target by hand once the foreign table is there',
    ]);
    expect(built.objects.filter((o) => o.key.startsWith('view ')).map((o) => o.key)).toEqual(['view "public"."local"']);
  });

  it('reports an ownership change a non-superuser target role cannot make, once per owner and reason, and only for objects that will change', () => {
    const tables = [
      table('public', 'a', []), table('public', 'b', []), table('public', 'c', [], { owner: 'other' }), table('public', 'mine', [], { owner: 'loader' }),
      table('sales', 's1', [], { owner: 'other' }), table('sales', 's2', [], { owner: 'seller' }),
    ];
    const schemas = [{ name: 'sales', owner: 'seller', grants: [], comment: null }];
    const nonSuper = {
      ...facts, roles: new Set(['app', 'other', 'seller', 'loader', 'postgres']), currentUser: 'loader', superuser: false,
      assignableOwners: new Set(['loader', 'other', 'seller']), ownerPrivileges: new Set(['loader', 'other', 'seller']), schemaCreators: new Map([['public', new Set(['loader', 'seller'])]]),
    };
    const tail = ', connect as a superuser, or start with --schema-copy=false and create the schema yourself';
    const plan = planSchema(buildSchema(catalog({ schemas, tables })), null, nonSuper);
    expect(plan.conflicts).toEqual([
      `target: role loader cannot give objects to role app, which owns table "public"."a" and 1 more on the source (schema copy sets the same owners); run GRANT "app" TO "loader"${tail}`,
      `target: role app, which owns table "public"."a" and 1 more on the source, has no CREATE privilege on schema public on the target, which taking ownership needs; run GRANT CREATE ON SCHEMA "public" TO "app"${tail}`,
      `target: role other, which owns table "public"."c" on the source, has no CREATE privilege on schema public on the target, which taking ownership needs; run GRANT CREATE ON SCHEMA "public" TO "other"${tail}`,
      `target: role other, which owns table "sales"."s1" on the source, would have no CREATE privilege on schema sales (created by schema copy, owned by another role) when it takes ownership; create the schema on the target first and run GRANT CREATE ON SCHEMA "sales" TO "other"${tail}`,
    ]);
    expect(plan.postData.filter((o) => o.key.startsWith('owner of ')).map((o) => o.key)).toEqual(['owner of schema "sales"', 'owner of table "sales"."s2"']);
    // Already on the target with the same owners: nothing changes, so nothing to refuse.
    expect(planSchema(buildSchema(catalog({ schemas, tables })), buildSchema(catalog({ schemas, tables })), nonSuper).conflicts).toEqual([]);
    // A superuser needs neither privilege.
    expect(planSchema(buildSchema(catalog({ schemas, tables })), null, { ...nonSuper, superuser: true }).conflicts).toEqual([]);
    // A member that does not inherit the owner's privileges.
    expect(planSchema(buildSchema(catalog({ schemas: [], tables: [table('public', 'n', [], { owner: 'seller' })] })), null, { ...nonSuper, ownerPrivileges: new Set(['loader']) }).conflicts).toEqual([
      `target: role loader is a member of role seller without its privileges (NOINHERIT), which it needs to go on with table "public"."n" once seller owns it; run GRANT "seller" TO "loader" WITH INHERIT TRUE (PostgreSQL 16+) or ALTER ROLE "loader" INHERIT${tail}`,
    ]);

    // On the target: schema sales (and a table in it) made by the target role itself, a table owned
    // by a role whose privileges it lacks. Schema copy gives sales to seller first: seller's table
    // needs no grant, loader loses CREATE there (it had it as the owner), and taking the table from
    // ghost is refused.
    const onTarget = buildSchema(catalog({
      schemas: [{ name: 'sales', owner: 'loader', grants: [], comment: null }],
      tables: [table('sales', 's2', [], { owner: 'loader' }), table('sales', 's3', [], { owner: 'loader' }), table('public', 'g', [], { owner: 'ghost' })],
    }));
    const fromSource = buildSchema(catalog({
      schemas,
      tables: [table('sales', 's2', [], { owner: 'seller' }), table('sales', 's3', [], { owner: 'other' }), table('public', 'g', [], { owner: 'loader' })],
    }));
    const existing = { ...nonSuper, roles: new Set([...nonSuper.roles, 'ghost']), ownerPrivileges: new Set(['loader', 'other', 'seller']), schemaCreators: new Map([['public', new Set(['loader'])], ['sales', new Set(['loader', 'other'])]]) };
    const refused = planSchema(fromSource, onTarget, existing).conflicts;
    expect(refused).toEqual([
      `target: role loader cannot take objects from role ghost, which owns table "public"."g" on the target; run GRANT "ghost" TO "loader"${tail}`,
    ]);
    // Without its own CREATE on sales, other's table is refused: sales' grants come after the owners.
    const lost = planSchema(fromSource, onTarget, { ...existing, ownerPrivileges: new Set(['loader', 'other', 'seller', 'ghost']), schemaCreators: new Map([['public', new Set(['loader'])], ['sales', new Set(['loader'])]]) }).conflicts;
    expect(lost).toEqual([
      `target: role other, which owns table "sales"."s3" on the source, would have no CREATE privilege on schema sales once schema copy gives the schema to role seller; run GRANT CREATE ON SCHEMA "sales" TO "other"${tail}`,
    ]);
  });

  it('narrows to --tables: partitions follow their parent, foreign keys to other tables and views are left out', () => {
    const full = catalog({
      tables: [table('public', 'a', []), table('public', 'b', []), table('public', 'a_1', [], { partitionOf: { schema: 'public', name: 'a', bound: 'DEFAULT' } })],
      constraints: [{ schema: 'public', table: 'a', name: 'a_b', type: 'f', def: 'FOREIGN KEY (x) REFERENCES public.b(id)', validated: true, local: true, onPartitioned: false, replicaIdentity: false, indexDef: null, indexName: null, references: { schema: 'public', name: 'b' }, comment: null }],
    });
    const { catalog: scoped, notes } = scopeCatalog(full, [{ schema: 'public', name: 'a' }]);
    expect(scoped.tables.map((t) => t.name)).toEqual(['a', 'a_1']);
    // b's serial sequence stays, without an owner of its own: b's migration gives it b's owner.
    const seq = { schema: 'public', name: 'b_id_seq', dataType: 'integer', start: '1', increment: '1', min: '1', max: '2147483647', cache: '1', cycle: false, owner: 'app', grants: [], comment: null };
    const withSeq = scopeCatalog({ ...full, sequences: [{ ...seq, ownedBy: { schema: 'public', table: 'b', column: 'id' } }] }, [{ schema: 'public', name: 'a' }]).catalog;
    expect(buildSchema(withSeq).objects.filter((o) => o.key.includes('b_id_seq')).map((o) => o.key)).toEqual(['sequence "public"."b_id_seq"']);
    expect(buildSchema({ ...withSeq, sequences: [{ ...seq, ownedBy: null }] }).objects.filter((o) => o.key.includes('b_id_seq')).map((o) => o.key)).toEqual(['sequence "public"."b_id_seq"', 'owner of sequence "public"."b_id_seq"']);
    expect(scoped.constraints).toEqual([]);
    expect(notes[0]).toContain('references "public"."b"');
  });

  it('marks what may run on parallel sessions: indexes and keys built as indexes share their family\'s lock, other constraints and ANALYZE run alone, foreign keys not at all', () => {
    const con = (tbl: string, name: string, type: 'u' | 'c' | 'f' | 'p', def: string, indexDef: string | null = null) => ({ schema: 'public', table: tbl, name, type, def, validated: true, local: true, onPartitioned: false, replicaIdentity: false, indexDef, indexName: indexDef ? name : null, references: type === 'f' ? { schema: 'public', name: 'a' } : null, comment: null });
    const idx = (tbl: string, name: string) => ({ schema: 'public', table: tbl, name, def: `CREATE INDEX ${name} ON public.${tbl} USING btree (id)`, primary: false, replicaIdentity: false, constraintBacked: false, inherited: false, onPartitioned: false, comment: null });
    const built = buildSchema(catalog({
      tables: [
        table('public', 'a', [col('id', 'integer')]),
        table('public', 'p', [col('id', 'integer')], { kind: 'p', partitionKey: 'LIST (id)' }),
        table('public', 'p_1', [col('id', 'integer', { isLocal: false })], { partitionOf: { schema: 'public', name: 'p', bound: 'FOR VALUES IN (1)' }, kind: 'p', partitionKey: 'LIST (id)' }),
        table('public', 'p_1_1', [col('id', 'integer', { isLocal: false })], { partitionOf: { schema: 'public', name: 'p_1', bound: 'FOR VALUES IN (1)' } }),
        table('public', 'kid', [col('id', 'integer')], { inherits: [{ schema: 'public', name: 'a' }] }),
      ],
      indexes: [idx('a', 'a_i'), idx('p_1_1', 'p_1_1_i'), idx('kid', 'kid_i')],
      constraints: [
        con('a', 'a_pkey', 'p', 'PRIMARY KEY (id)', 'CREATE UNIQUE INDEX a_pkey ON public.a USING btree (id)'),
        con('a', 'a_u', 'u', 'UNIQUE (id) DEFERRABLE INITIALLY DEFERRED', 'CREATE UNIQUE INDEX a_u ON public.a USING btree (id)'),
        con('a', 'a_t', 'u', 'UNIQUE (id) USING INDEX TABLESPACE fast', 'CREATE UNIQUE INDEX a_t ON public.a USING btree (id)'),
        con('a', 'a_c', 'c', 'CHECK (id > 0)'),
        con('kid', 'kid_a', 'f', 'FOREIGN KEY (id) REFERENCES public.a(id)'),
      ],
    }));
    const lockOf = (key: string) => built.objects.find((o) => o.key === key)!.lock;
    const a = 'table "public"."a"';
    expect(lockOf('index "public"."a_i"')).toEqual({ family: a, shared: true });
    expect(lockOf('index "public"."p_1_1_i"')).toEqual({ family: 'table "public"."p"', shared: true });
    expect(lockOf('index "public"."kid_i"')).toEqual({ family: a, shared: true });
    expect(lockOf(`constraint "a_u" on ${a}`)).toEqual({ family: a, shared: true });
    expect(built.objects.find((o) => o.key === `constraint "a_u" on ${a}`)!.statements[1]).toBe('ALTER TABLE ONLY "public"."a" ADD CONSTRAINT "a_u" UNIQUE USING INDEX "a_u" DEFERRABLE INITIALLY DEFERRED');
    // An index tablespace is not in the index definition: built the ordinary way, alone.
    expect(lockOf(`constraint "a_t" on ${a}`)).toEqual({ family: a, shared: false });
    expect(built.objects.find((o) => o.key === `constraint "a_t" on ${a}`)!.statements).toEqual(['ALTER TABLE ONLY "public"."a" ADD CONSTRAINT "a_t" UNIQUE (id) USING INDEX TABLESPACE fast']);
    expect(lockOf(`constraint "a_c" on ${a}`)).toEqual({ family: a, shared: false });
    expect(lockOf(`constraint "a_pkey" on ${a}`)).toEqual({ family: a, shared: true });
    expect(lockOf('constraint "kid_a" on table "public"."kid"')).toBeUndefined();
    expect(lockOf('validation of constraint "kid_a" on table "public"."kid"')).toBeUndefined();
    expect(lockOf(`analyze table "public"."kid"`)).toEqual({ family: 'table "public"."kid"', shared: false });
    const post = planSchema(built, null, null).postData;
    // Two runs of parallel work (indexes and constraints, then the ANALYZEs), everything else in between.
    expect(post.filter((o, i) => o.lock && !post[i - 1]?.lock).length).toBe(2);
    expect(post.at(-1)!.lock).toBeDefined();
  });
});
