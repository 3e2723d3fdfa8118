import { ident, literal } from '../pg/connection.js';
import type { CatalogColumn, CatalogConstraint, CatalogTable, Grant, SchemaCatalog } from './model.js';

/** Pre-data runs before the initial copy, post-data after it (so that loading is fast). */
export type SchemaPhase = 'pre-data' | 'post-data';

/**
 * What to do when the object already exists on the target:
 * `create`: leave it alone when it matches, a conflict when it differs;
 * `converge`: re-apply when it differs (comments, owners, grants, replica identity, validation);
 * `always`: run every time (ANALYZE).
 */
export type SchemaMode = 'create' | 'converge' | 'always';

/**
 * One schema object and the DDL that creates it. Built the same way from the source's and the
 * target's catalog, so that two objects with the same `key` can be compared by `details`.
 */
export interface SchemaObject {
  /** Identity, equal on both sides for the same object (kind and quoted qualified name). */
  key: string;
  /** How messages name it, e.g. `table "public"."kv"`. */
  label: string;
  phase: SchemaPhase;
  /** Global order: objects run sorted by (step, rank), then in catalog order. */
  step: number;
  rank: number;
  mode: SchemaMode;
  statements: string[];
  /** Compared aspect by aspect; the first that differs is what a conflict reports. */
  details: Record<string, string>;
  /**
   * On an owner change: the schema the object is in (the new owner needs CREATE there), or for a
   * schema's own owner, `{ schema: name, isSchema: true }`.
   */
  owned?: { schema: string; isSchema?: true };
  /** Roles the statements name (owner, grantee): the object is skipped when one is missing on the target. */
  roles: string[];
  /** `ALTER DEFAULT PRIVILEGES FOR ROLE` this role: running it needs the role's privileges. */
  defaultsOf?: string;
  /** The extension the object creates: it must be available on the target. */
  extension?: string;
  /** Key of the table this object hangs on (indexes, constraints, triggers, comments...). */
  table?: string;
  /** Key of the parent of a partition: a parent that already exists on the target keeps its own partitions. */
  partitionOf?: string;
  /**
   * Aspects whose deparsed text changes between major versions (a view's definition: 16+ drops
   * redundant qualifications). Compared only when both servers run the same major version; the
   * object's other aspects (a view's columns and their types) are always compared.
   */
  loose?: string[];
  /**
   * Post-data objects that run once streaming has started, before a cutover (foreign-key
   * validation, ANALYZE): apply needs neither, they change no rows and no table's shape, and
   * their locks do not block apply's row writes.
   */
  whileStreaming?: boolean;
  /**
   * Set on post-data objects that depend on nothing else of their step and may run on parallel
   * sessions (indexes, non-foreign-key constraints, ANALYZE). `family` is the key of the table whose
   * locks the statement takes, for partitions and inheritance children their root's (a statement
   * on a parent also locks its children). `shared`: the lock does not conflict with itself
   * (CREATE INDEX takes SHARE), so several such statements of one family run at once; otherwise
   * (ALTER TABLE ADD CONSTRAINT, ANALYZE) the statement runs alone within its family.
   */
  lock?: { family: string; shared: boolean };
}

/** Objects built from a catalog, plus notes for what cannot be copied. */
export interface BuiltSchema {
  objects: SchemaObject[];
  notes: string[];
  serverMajor: number;
}

const STEP = {
  schema: 1,
  extension: 2,
  type: 3,
  preFunction: 3,
  sequence: 5,
  table: 6,
  sequenceOwnedBy: 7,
  primaryKey: 8,
  replicaIdentity: 9,
  function: 10,
  view: 11,
  index: 12,
  constraint: 13,
  foreignKey: 14,
  validate: 15,
  trigger: 16,
  comment: 17,
  owner: 18,
  grant: 19,
  analyze: 20,
} as const;

/** `ALTER DEFAULT PRIVILEGES ... ON` what, by `pg_default_acl.defaclobjtype`. */
const DEFAULT_PRIVILEGE_KINDS: Record<string, string> = { r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES', n: 'SCHEMAS', L: 'LARGE OBJECTS' };

/** The privilege PUBLIC has by default on new objects of a kind (functions, types). */
const PUBLIC_DEFAULTS: Record<string, string> = { f: 'EXECUTE', T: 'USAGE' };

/** Grants by grantee, in the order the grantees first appear. */
function byGrantee(grants: Grant[]): Map<string, Grant[]> {
  const by = new Map<string, Grant[]>();
  for (const g of grants) by.set(g.grantee, [...(by.get(g.grantee) ?? []), g]);
  return by;
}

/**
 * One grantee's privileges as GRANT statements (`grant` writes one for a list of privileges), those
 * with grant option apart, and as compared between source and target.
 */
function grantStatements(list: Grant[], grant: (privileges: string) => string): { statements: string[]; privileges: string } {
  const plain = list.filter((g) => !g.grantable).map((g) => g.privilege).sort();
  const grantable = list.filter((g) => g.grantable).map((g) => g.privilege).sort();
  return {
    statements: [...(plain.length > 0 ? [grant(plain.join(', '))] : []), ...(grantable.length > 0 ? [`${grant(grantable.join(', '))} WITH GRANT OPTION`] : [])],
    privileges: [...plain, ...grantable.map((p) => `${p} WITH GRANT OPTION`)].join(', '),
  };
}

/** `"schema"."name"`. */
export function qname(schema: string, name: string): string {
  return `${ident(schema)}.${ident(name)}`;
}

/** Collapses whitespace so that deparse output compares equal across server versions' formatting. */
export function normalizeSql(sql: string): string {
  return sql.replace(/\s+/g, ' ').trim().replace(/;$/, '').trim();
}

/** One column of CREATE TABLE. */
export function columnDefinition(c: CatalogColumn): string {
  const parts = [ident(c.name), c.type];
  if (c.collation) parts.push(`COLLATE ${c.collation}`);
  if (c.generated === 's' || c.generated === 'v') {
    parts.push(`GENERATED ALWAYS AS (${c.generatedExpr ?? ''}) ${c.generated === 's' ? 'STORED' : 'VIRTUAL'}`);
  } else if (c.identity) {
    const s = c.identitySequence;
    const options = s
      ? ` (SEQUENCE NAME ${qname(s.schema, s.name)} START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'})`
      : '';
    parts.push(`GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${options}`);
  } else if (c.defaultExpr !== null) parts.push(`DEFAULT ${c.defaultExpr}`);
  if (c.notNull) parts.push('NOT NULL');
  return parts.join(' ');
}

/** What a table column is, for comparison (identity sequence options are not compared). */
function columnSignature(c: CatalogColumn): string {
  const parts = [c.type];
  if (c.collation) parts.push(`COLLATE ${c.collation}`);
  if (c.generated) parts.push(`GENERATED ALWAYS AS (${c.generatedExpr ?? ''}) ${c.generated === 's' ? 'STORED' : 'VIRTUAL'}`);
  else if (c.identity) parts.push(`GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`);
  else if (c.defaultExpr !== null) parts.push(`DEFAULT ${c.defaultExpr}`);
  if (c.notNull) parts.push('NOT NULL');
  return parts.join(' ');
}

/** CREATE TABLE for an ordinary or partitioned table, a partition, or an inheritance child. */
export function createTable(t: CatalogTable): string {
  const name = qname(t.schema, t.name);
  const withOptions = t.options.length > 0 ? ` WITH (${t.options.join(', ')})` : '';
  const partitionBy = t.partitionKey ? ` PARTITION BY ${t.partitionKey}` : '';
  if (t.partitionOf) {
    return `CREATE${t.unlogged ? ' UNLOGGED' : ''} TABLE ${name} PARTITION OF ${qname(t.partitionOf.schema, t.partitionOf.name)} ${t.partitionOf.bound}${partitionBy}${withOptions}`;
  }
  // An inheritance child lists only its own columns: the inherited ones come from the parents.
  const columns = t.inherits.length > 0 ? t.columns.filter((c) => c.isLocal) : t.columns;
  const body = columns.map((c) => `  ${columnDefinition(c)}`).join(',\n');
  const inherits = t.inherits.length > 0 ? ` INHERITS (${t.inherits.map((p) => qname(p.schema, p.name)).join(', ')})` : '';
  return `CREATE${t.unlogged ? ' UNLOGGED' : ''} TABLE ${name} (\n${body}\n)${inherits}${partitionBy}${withOptions}`;
}

/** `pg_get_indexdef` reads `ON ONLY` for a partitioned table's index; without ONLY it is built on every partition. */
export function indexStatement(def: string, onPartitioned: boolean): string {
  return onPartitioned ? def.replace(/ ON ONLY /, ' ON ') : def;
}

const REPLICA_IDENTITY: Record<string, string> = { d: 'DEFAULT', n: 'NOTHING', f: 'FULL' };

/**
 * A primary key or unique constraint built as a unique index, then attached with `USING INDEX`
 * (what it means is unchanged). Not on a partitioned table (not supported there), nor with an
 * index tablespace (the index definition does not carry it).
 */
function byIndex(c: CatalogConstraint): boolean {
  return (c.type === 'p' || c.type === 'u') && !c.onPartitioned && c.indexDef !== null && c.indexName !== null && /^CREATE UNIQUE INDEX /.test(c.indexDef) && !c.def.includes(' TABLESPACE ');
}

/**
 * Turns a catalog into schema objects with their DDL, ordered as they must run. Pure: the same
 * function builds the target's objects, so both sides compare key by key.
 */
export function buildSchema(catalog: SchemaCatalog): BuiltSchema {
  const objects: SchemaObject[] = [];
  const notes: string[] = [];
  const add = (o: Omit<SchemaObject, 'roles' | 'rank'> & { roles?: string[]; rank?: number }): void => {
    objects.push({ roles: [], rank: 0, ...o });
  };
  const tableKey = (schema: string, name: string): string => `table ${qname(schema, name)}`;
  const comment = (targetKey: string, what: string, text: string | null, table?: string): void => {
    if (text === null) return;
    add({ key: `comment on ${targetKey}`, label: `comment on ${what}`, phase: 'post-data', step: STEP.comment, mode: 'converge', statements: [`COMMENT ON ${what} IS ${literal(text)}`], details: { comment: text }, ...(table ? { table } : {}) });
  };
  /**
   * An owner change (unless `owned` is null: the owner follows another object's), the grants, and
   * the revocation of a privilege PUBLIC has by default (`revoked`).
   */
  const ownership = (targetKey: string, alter: string, owner: string, grantOn: string, grantList: Grant[], owned: SchemaObject['owned'] | null, table?: string, revoked?: string | null): void => {
    const extra = table ? { table } : {};
    if (revoked) {
      add({ key: `revocation of ${revoked} from PUBLIC on ${targetKey}`, label: `${revoked} revoked from PUBLIC on ${targetKey}`, phase: 'post-data', step: STEP.grant, mode: 'converge', statements: [`REVOKE ${revoked} ON ${grantOn} FROM PUBLIC`], details: { revoked }, ...extra });
    }
    if (owned) add({ key: `owner of ${targetKey}`, label: `owner of ${targetKey}`, phase: 'post-data', step: STEP.owner, mode: 'converge', statements: [`ALTER ${alter} OWNER TO ${ident(owner)}`], details: { owner }, roles: [owner], owned, ...extra });
    for (const [grantee, list] of byGrantee(grantList)) {
      const { statements, privileges } = grantStatements(list, (privs) => `GRANT ${privs} ON ${grantOn} TO ${grantee === 'PUBLIC' ? 'PUBLIC' : ident(grantee)}`);
      add({ key: `privileges of ${grantee} on ${targetKey}`, label: `privileges of role ${grantee} on ${targetKey}`, phase: 'post-data', step: STEP.grant, mode: 'converge', statements, details: { privileges }, roles: grantee === 'PUBLIC' ? [] : [grantee], ...extra });
    }
  };

  for (const s of catalog.schemas) {
    const key = `schema ${ident(s.name)}`;
    add({ key, label: key, phase: 'pre-data', step: STEP.schema, mode: 'create', statements: [`CREATE SCHEMA ${ident(s.name)}`], details: {} });
    comment(key, `SCHEMA ${ident(s.name)}`, s.comment);
    // public's owner and privileges are the server's own defaults, and they changed in PostgreSQL 15.
    if (s.name !== 'public') ownership(key, `SCHEMA ${ident(s.name)}`, s.owner, `SCHEMA ${ident(s.name)}`, s.grants, { schema: s.name, isSchema: true });
  }
  for (const e of catalog.extensions) {
    const key = `extension ${ident(e.name)}`;
    add({ key, label: key, phase: 'pre-data', step: STEP.extension, mode: 'create', statements: [`CREATE EXTENSION IF NOT EXISTS ${ident(e.name)} WITH SCHEMA ${ident(e.schema)}`], details: { schema: e.schema }, extension: e.name });
  }
  for (const t of catalog.types) {
    const name = qname(t.schema, t.name);
    const word = t.kind === 'd' ? 'domain' : 'type';
    const key = `${word} ${name}`;
    let statement: string;
    const details: Record<string, string> = { kind: t.kind };
    if (t.kind === 'e') {
      statement = `CREATE TYPE ${name} AS ENUM (${t.labels.map(literal).join(', ')})`;
      details['labels'] = t.labels.join(', ');
    } else if (t.kind === 'c') {
      const attrs = t.attributes.map((a) => `${ident(a.name)} ${a.type}${a.collation ? ` COLLATE ${a.collation}` : ''}`);
      statement = `CREATE TYPE ${name} AS (${attrs.join(', ')})`;
      details['attributes'] = attrs.join(', ');
    } else if (t.kind === 'd') {
      const parts = [`CREATE DOMAIN ${name} AS ${t.baseType ?? ''}`];
      if (t.collation) parts.push(`COLLATE ${t.collation}`);
      if (t.defaultExpr !== null) parts.push(`DEFAULT ${t.defaultExpr}`);
      if (t.notNull) parts.push('NOT NULL');
      for (const c of t.checks) parts.push(`CONSTRAINT ${ident(c.name)} ${c.def}`);
      statement = parts.join(' ');
      Object.assign(details, { base: t.baseType ?? '', collation: t.collation ?? '', default: t.defaultExpr ?? '', 'not null': String(t.notNull) });
      for (const c of t.checks) details[`constraint ${ident(c.name)}`] = c.def;
    } else {
      const r = t.range!;
      const options = [`SUBTYPE = ${r.subtype}`];
      if (r.opclass) options.push(`SUBTYPE_OPCLASS = ${r.opclass}`);
      if (r.collation) options.push(`COLLATION = ${r.collation}`);
      if (r.subtypeDiff) options.push(`SUBTYPE_DIFF = ${r.subtypeDiff}`);
      if (r.multirange) options.push(`MULTIRANGE_TYPE_NAME = ${r.multirange}`);
      statement = `CREATE TYPE ${name} AS RANGE (${options.join(', ')})`;
      details['range'] = options.join(', ');
    }
    add({ key, label: key, phase: 'pre-data', step: STEP.type, rank: t.oid, mode: 'create', statements: [statement], details });
    comment(key, `${word.toUpperCase()} ${name}`, t.comment);
    ownership(key, `${word.toUpperCase()} ${name}`, t.owner, `${word.toUpperCase()} ${name}`, t.grants, { schema: t.schema }, undefined, t.revokedFromPublic);
  }
  for (const f of catalog.functions) {
    const word = f.kind === 'p' ? 'PROCEDURE' : f.kind === 'a' ? 'AGGREGATE' : 'FUNCTION';
    const signature = `${qname(f.schema, f.name)}(${f.args})`;
    const key = `${word.toLowerCase()} ${signature}`;
    if (f.def === null) {
      notes.push(`${key} is not copied (aggregates cannot be deparsed by the server); create it on the target by hand`);
      continue;
    }
    const pre = f.neededByPreData;
    add({ key, label: key, phase: pre ? 'pre-data' : 'post-data', step: pre ? STEP.preFunction : STEP.function, rank: f.oid, mode: 'create', statements: [f.def.trim()], details: { definition: normalizeSql(f.def) } });
    comment(key, `${word} ${signature}`, f.comment);
    ownership(key, `${word} ${signature}`, f.owner, `${word} ${signature}`, f.grants, { schema: f.schema }, undefined, f.revokedFromPublic);
  }
  for (const s of catalog.sequences) {
    const name = qname(s.schema, s.name);
    const key = `sequence ${name}`;
    const statement = `CREATE SEQUENCE ${name} AS ${s.dataType} START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`;
    add({ key, label: key, phase: 'pre-data', step: STEP.sequence, mode: 'create', statements: [statement], details: { type: s.dataType, start: s.start, increment: s.increment, minvalue: s.min, maxvalue: s.max, cache: s.cache, cycle: String(s.cycle) } });
    if (s.ownedBy) {
      const table = tableKey(s.ownedBy.schema, s.ownedBy.table);
      add({ key: `owned by of ${key}`, label: `OWNED BY of ${key}`, phase: 'pre-data', step: STEP.sequenceOwnedBy, mode: 'converge', statements: [`ALTER SEQUENCE ${name} OWNED BY ${qname(s.ownedBy.schema, s.ownedBy.table)}.${ident(s.ownedBy.column)}`], details: { 'owned by': `${table}.${ident(s.ownedBy.column)}` }, table });
    }
    comment(key, `SEQUENCE ${name}`, s.comment);
    // A sequence owned by a column has its table's owner, and only ALTER TABLE ... OWNER TO can
    // change it (PostgreSQL refuses ALTER SEQUENCE ... OWNER TO on it, and linking it later to a
    // table with another owner).
    ownership(key, `SEQUENCE ${name}`, s.owner, `SEQUENCE ${name}`, s.grants, s.ownedBy || s.linkedElsewhere ? null : { schema: s.schema });
  }

  const byKey = new Map(catalog.tables.map((t) => [tableKey(t.schema, t.name), t]));
  const depth = (t: CatalogTable, seen = 0): number => {
    const parents = [...(t.partitionOf ? [t.partitionOf] : []), ...t.inherits];
    if (seen > 50 || parents.length === 0) return 0;
    return 1 + Math.max(...parents.map((p) => { const pt = byKey.get(tableKey(p.schema, p.name)); return pt ? depth(pt, seen + 1) : 0; }));
  };
  /** The key of a table's partitioning or (first) inheritance root: the family whose locks statements on it share. */
  const family = (key: string): string => {
    let current = key;
    for (let seen = 0; seen <= 50; seen++) {
      const t = byKey.get(current);
      const parent = t?.partitionOf ?? t?.inherits[0];
      if (!parent) break;
      current = tableKey(parent.schema, parent.name);
    }
    return current;
  };
  for (const t of catalog.tables) {
    const name = qname(t.schema, t.name);
    const key = tableKey(t.schema, t.name);
    const details: Record<string, string> = {
      kind: t.kind === 'p' ? 'partitioned table' : 'table',
      persistence: t.unlogged ? 'unlogged' : 'logged',
      'partition key': t.partitionKey ?? 'none',
      'partition of': t.partitionOf ? `${qname(t.partitionOf.schema, t.partitionOf.name)} ${t.partitionOf.bound}` : 'none',
      inherits: t.inherits.map((p) => qname(p.schema, p.name)).join(', ') || 'none',
    };
    for (const c of t.columns) details[`column ${ident(c.name)}`] = columnSignature(c);
    add({ key, label: key, phase: 'pre-data', step: STEP.table, rank: depth(t), mode: 'create', statements: [createTable(t)], details, table: key, ...(t.partitionOf ? { partitionOf: tableKey(t.partitionOf.schema, t.partitionOf.name) } : {}) });
    if (t.replicaIdentity !== 'd') {
      const how = t.replicaIdentity === 'i' ? `USING INDEX ${ident(t.replicaIdentityIndex ?? '')}` : REPLICA_IDENTITY[t.replicaIdentity]!;
      add({ key: `replica identity of ${key}`, label: `replica identity of ${key}`, phase: t.replicaIdentity === 'i' ? 'post-data' : 'pre-data', step: STEP.replicaIdentity, mode: 'converge', statements: [`ALTER TABLE ONLY ${name} REPLICA IDENTITY ${how}`], details: { 'replica identity': how }, table: key });
    }
    comment(key, `TABLE ${name}`, t.comment, key);
    for (const c of t.columns) comment(`column ${ident(c.name)} of ${key}`, `COLUMN ${name}.${ident(c.name)}`, c.isLocal || !t.partitionOf ? c.comment : null, key);
    ownership(key, `TABLE ${name}`, t.owner, `TABLE ${name}`, t.grants, { schema: t.schema }, key);
    if (!t.partitionOf) add({ key: `analyze ${key}`, label: `ANALYZE ${key}`, phase: 'post-data', step: STEP.analyze, mode: 'always', statements: [`ANALYZE ${name}`], details: {}, table: key, lock: { family: key, shared: false }, whileStreaming: true });
  }
  for (const x of catalog.indexes) {
    if (x.inherited || x.constraintBacked) continue;
    const key = `index ${qname(x.schema, x.name)}`;
    const table = tableKey(x.schema, x.table);
    const early = x.replicaIdentity || x.primary;
    add({ key, label: `${key} on ${table}`, phase: 'post-data', step: early ? STEP.primaryKey : STEP.index, mode: 'create', statements: [indexStatement(x.def, x.onPartitioned)], details: { definition: x.def }, table, lock: { family: family(table), shared: true } });
    comment(key, `INDEX ${qname(x.schema, x.name)}`, x.comment, table);
  }
  for (const c of catalog.constraints) {
    if (!c.local) continue;
    const table = tableKey(c.schema, c.table);
    const on = `${c.onPartitioned ? '' : 'ONLY '}${qname(c.schema, c.table)}`;
    const key = `constraint ${ident(c.name)} on ${table}`;
    const kind = c.type === 'p' ? 'primary key' : c.type === 'f' ? 'foreign key' : c.type === 'u' ? 'unique constraint' : c.type === 'c' ? 'check constraint' : 'exclusion constraint';
    const label = `${kind} ${ident(c.name)} on ${table}`;
    const early = c.type === 'p' || (c.type === 'u' && c.replicaIdentity);
    if (c.type === 'f') {
      // NOT VALID first (no full scan under a strong lock), then VALIDATE in its own transaction.
      // A partitioned table cannot take NOT VALID foreign keys before PostgreSQL 18.
      const notValid = !c.onPartitioned || !c.validated;
      const fkOn = `${c.onPartitioned ? '' : 'ONLY '}${qname(c.schema, c.table)}`;
      add({ key, label, phase: 'post-data', step: STEP.foreignKey, mode: 'create', statements: [`ALTER TABLE ${fkOn} ADD CONSTRAINT ${ident(c.name)} ${c.def}${notValid ? ' NOT VALID' : ''}`], details: { definition: c.def }, table });
      if (c.validated) {
        add({ key: `validation of ${key}`, label: `validation of ${label}`, phase: 'post-data', step: STEP.validate, mode: 'converge', statements: [`ALTER TABLE ${qname(c.schema, c.table)} VALIDATE CONSTRAINT ${ident(c.name)}`], details: { validated: 'true' }, table, whileStreaming: true });
      }
    } else if (byIndex(c)) {
      // The index first, under a SHARE lock (other indexes of the table build at the same time),
      // then the constraint takes it over: a moment under ACCESS EXCLUSIVE, in its own transaction.
      const statements = [c.indexDef!.replace(/^CREATE UNIQUE INDEX /, 'CREATE UNIQUE INDEX IF NOT EXISTS '), `ALTER TABLE ${on} ADD CONSTRAINT ${ident(c.name)} ${c.type === 'p' ? 'PRIMARY KEY' : 'UNIQUE'} USING INDEX ${ident(c.indexName!)}${/ DEFERRABLE( INITIALLY DEFERRED)?$/.exec(c.def)?.[0] ?? ''}`];
      add({ key, label, phase: 'post-data', step: early ? STEP.primaryKey : STEP.constraint, mode: 'create', statements, details: { definition: c.def }, table, lock: { family: family(table), shared: true } });
    } else {
      const statement = `ALTER TABLE ${c.type === 'c' ? qname(c.schema, c.table) : on} ADD CONSTRAINT ${ident(c.name)} ${c.def}${c.validated ? '' : ' NOT VALID'}`;
      add({ key, label, phase: 'post-data', step: early ? STEP.primaryKey : STEP.constraint, mode: 'create', statements: [statement], details: { definition: c.def }, table, lock: { family: family(table), shared: false } });
    }
    comment(key, `CONSTRAINT ${ident(c.name)} ON ${qname(c.schema, c.table)}`, c.comment, table);
  }
  for (const tr of catalog.triggers) {
    const table = tableKey(tr.schema, tr.table);
    const key = `trigger ${ident(tr.name)} on ${table}`;
    const statements = [tr.def];
    if (tr.enabled === 'D') statements.push(`ALTER TABLE ${qname(tr.schema, tr.table)} DISABLE TRIGGER ${ident(tr.name)}`);
    if (tr.enabled === 'A' || tr.enabled === 'R') {
      // It would fire during apply (session_replication_role = replica) and repeat work the source already did.
      statements.push(`ALTER TABLE ${qname(tr.schema, tr.table)} DISABLE TRIGGER ${ident(tr.name)}`);
      notes.push(`${key} is ENABLE ${tr.enabled === 'A' ? 'ALWAYS' : 'REPLICA'} on the source: created disabled so that apply does not fire it; after cutover run ALTER TABLE ${qname(tr.schema, tr.table)} ENABLE ${tr.enabled === 'A' ? 'ALWAYS' : 'REPLICA'} TRIGGER ${ident(tr.name)}`);
    }
    add({ key, label: key, phase: 'post-data', step: STEP.trigger, mode: 'create', statements, details: { definition: tr.def }, table });
    comment(key, `TRIGGER ${ident(tr.name)} ON ${qname(tr.schema, tr.table)}`, tr.comment, table);
  }
  for (const f of catalog.foreignTables) {
    const partition = f.partitionOf ? ` (a partition of ${f.partitionOf}, which pgferry cannot migrate with it)` : '';
    notes.push(`foreign table ${qname(f.schema, f.name)} is not copied${partition}: its rows live on another server, and pgferry migrates neither it nor its server and user mappings; create them on the target by hand`);
  }
  catalog.views.forEach((v, i) => {
    const name = qname(v.schema, v.name);
    const word = v.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW';
    const key = `${word.toLowerCase()} ${name}`;
    if (v.readsForeign) {
      notes.push(`${key} is not copied: it reads a foreign table; create it on the target by hand once the foreign table is there`);
      return;
    }
    const body = v.def.trim().replace(/;$/, '');
    const withOptions = v.options.length > 0 ? ` WITH (${v.options.join(', ')})` : '';
    const statement = v.kind === 'm' ? `CREATE MATERIALIZED VIEW ${name}${withOptions} AS\n${body}\nWITH DATA` : `CREATE VIEW ${name}${withOptions} AS\n${body}`;
    add({ key, label: key, phase: 'post-data', step: STEP.view, rank: i, mode: 'create', statements: [statement], details: { columns: v.columns, options: v.options.join(', '), definition: normalizeSql(v.def) }, loose: ['definition'], table: `table ${name}` });
    comment(key, `${word} ${name}`, v.comment);
    for (const c of v.columnComments) comment(`column ${ident(c.column)} of ${key}`, `COLUMN ${name}.${ident(c.column)}`, c.comment);
    ownership(key, `${word === 'VIEW' ? 'VIEW' : 'MATERIALIZED VIEW'} ${name}`, v.owner, `TABLE ${name}`, v.grants, { schema: v.schema });
  });
  for (const d of catalog.defaultPrivileges) {
    const kind = DEFAULT_PRIVILEGE_KINDS[d.kind];
    const scope = `${kind ?? d.kind} created by role ${d.role}${d.schema === null ? '' : ` in schema ${ident(d.schema)}`}`;
    if (!kind) {
      notes.push(`default privileges on ${scope} are not copied (pgferry does not know this kind of object); set them on the target by hand`);
      continue;
    }
    // An entry for every schema holds the whole list, PUBLIC's built-in default included unless revoked:
    // what PUBLIC keeps of it is no grant to make, what it lacks is a revocation.
    const builtIn = d.schema === null ? PUBLIC_DEFAULTS[d.kind] : undefined;
    const alter = `ALTER DEFAULT PRIVILEGES FOR ROLE ${ident(d.role)}${d.schema === null ? '' : ` IN SCHEMA ${ident(d.schema)}`}`;
    if (builtIn && !d.grants.some((g) => g.grantee === 'PUBLIC' && g.privilege === builtIn)) {
      const label = `default ${builtIn} of PUBLIC on ${scope}, revoked`;
      add({ key: label, label, phase: 'post-data', step: STEP.grant, mode: 'converge', statements: [`${alter} REVOKE ${builtIn} ON ${kind} FROM PUBLIC`], details: { revoked: builtIn }, roles: [d.role], defaultsOf: d.role });
    }
    if (d.selfRevoked.length > 0) {
      const label = `default privileges of role ${d.role} on ${scope}, revoked from itself`;
      add({ key: label, label, phase: 'post-data', step: STEP.grant, mode: 'converge', statements: [`${alter} REVOKE ${d.selfRevoked.join(', ')} ON ${kind} FROM ${ident(d.role)}`], details: { revoked: d.selfRevoked.join(', ') }, roles: [d.role], defaultsOf: d.role });
    }
    for (const [grantee, list] of byGrantee(d.grants.filter((g) => !(g.grantee === 'PUBLIC' && g.privilege === builtIn)))) {
      const to = grantee === 'PUBLIC' ? 'PUBLIC' : ident(grantee);
      const { statements, privileges } = grantStatements(list, (privs) => `${alter} GRANT ${privs} ON ${kind} TO ${to}`);
      const label = `default privileges of role ${grantee} on ${scope}`;
      // Revoked first, so that a target granting more ends up with the source's list (never PUBLIC's built-in default: filtered out above).
      add({ key: label, label, phase: 'post-data', step: STEP.grant, mode: 'converge', statements: [`${alter} REVOKE ALL ON ${kind} FROM ${to}`, ...statements], details: { privileges }, roles: grantee === 'PUBLIC' ? [d.role] : [d.role, grantee], defaultsOf: d.role });
    }
  }
  objects.sort((a, b) => a.step - b.step || a.rank - b.rank);
  return { objects, notes, serverMajor: catalog.serverMajor };
}
