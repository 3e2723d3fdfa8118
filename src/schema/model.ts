/**
 * Catalog facts about one database's schema, as {@link readCatalog} reads them with PostgreSQL's own
 * deparse functions (`pg_get_indexdef`, `pg_get_constraintdef`, `format_type`, ...) under an empty
 * `search_path`, so every name in a deparsed string is schema-qualified. Plain data: the DDL builder
 * (`ddl.ts`) turns it into statements without any I/O, which is what makes it unit-testable.
 */
export interface SchemaCatalog {
  /** Major version of the server it was read from (deparse output differs slightly between majors). */
  serverMajor: number;
  schemas: CatalogSchema[];
  extensions: CatalogExtension[];
  types: CatalogType[];
  sequences: CatalogSequence[];
  tables: CatalogTable[];
  indexes: CatalogIndex[];
  constraints: CatalogConstraint[];
  triggers: CatalogTrigger[];
  views: CatalogView[];
  functions: CatalogFunction[];
  /** Not copied (their rows live on another server): named in a note, with the views that read them. */
  foreignTables: { schema: string; name: string; partitionOf: string | null }[];
  defaultPrivileges: CatalogDefaultPrivileges[];
}

/**
 * One `pg_default_acl` entry: the privileges objects of `kind` get when `role` creates them (in
 * `schema`, or in any schema when null), from `ALTER DEFAULT PRIVILEGES ... GRANT`. `grants`
 * leaves out the creator's own; in an entry for every schema it lists what PUBLIC keeps of its
 * built-in defaults too: what it lacks of them was revoked.
 */
export interface CatalogDefaultPrivileges {
  role: string;
  schema: string | null;
  /** `pg_default_acl.defaclobjtype`: `r` tables, `S` sequences, `f` functions, `T` types, `n` schemas, `L` large objects (18+). */
  kind: string;
  grants: Grant[];
  /** In an entry for every schema: what the creator revoked from itself of its built-in privileges. */
  selfRevoked: string[];
}

/** One privilege granted on an object (from `aclexplode`); the owner's own grants are left out. */
export interface Grant {
  /** A role name, or `PUBLIC`. */
  grantee: string;
  privilege: string;
  grantable: boolean;
}

/** What every owned object carries. */
export interface Owned {
  owner: string;
  grants: Grant[];
  comment: string | null;
  /**
   * A privilege PUBLIC has by default on this kind of object (EXECUTE on functions, USAGE on
   * types) that the source revoked: a new object on the target has it until it is revoked there too.
   */
  revokedFromPublic?: string | null;
}

export interface CatalogSchema extends Owned {
  name: string;
}

export interface CatalogExtension {
  name: string;
  schema: string;
  version: string;
}

export interface CatalogType extends Owned {
  /** Creation order on the server: types and the functions they use are created in this order. */
  oid: number;
  schema: string;
  name: string;
  /** `e` enum, `d` domain, `c` composite, `r` range. */
  kind: 'e' | 'd' | 'c' | 'r';
  /** Enum labels in sort order. */
  labels: string[];
  /** Domain: base type (`format_type`), default expression, NOT NULL, collation, CHECK constraints. */
  baseType: string | null;
  defaultExpr: string | null;
  notNull: boolean;
  collation: string | null;
  checks: { name: string; def: string }[];
  /** Composite: attributes in order. */
  attributes: { name: string; type: string; collation: string | null }[];
  /** Range: subtype and options, each already a qualified name or null. */
  range: { subtype: string; opclass: string | null; collation: string | null; subtypeDiff: string | null; multirange: string | null } | null;
}

export interface CatalogSequence extends Owned {
  schema: string;
  name: string;
  dataType: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  /** `OWNED BY` (serial columns); null for free-standing sequences. */
  ownedBy: { schema: string; table: string; column: string } | null;
  /**
   * Owned by a column of a table outside `--tables` (`ownedBy` then null): its owner is left to that
   * table's migration, which links it and gives it the table's owner.
   */
  linkedElsewhere?: boolean;
}

/** Options of an identity column's sequence. */
export interface IdentitySequence {
  schema: string;
  name: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  dataType: string;
}

export interface CatalogColumn {
  name: string;
  type: string;
  collation: string | null;
  notNull: boolean;
  defaultExpr: string | null;
  /** `''`, `a` (ALWAYS) or `d` (BY DEFAULT). */
  identity: '' | 'a' | 'd';
  identitySequence: IdentitySequence | null;
  /** `''`, `s` (STORED) or `v` (VIRTUAL, 18+). */
  generated: '' | 's' | 'v';
  generatedExpr: string | null;
  /** False for a column that only comes from a parent (inheritance or partitioning). */
  isLocal: boolean;
  comment: string | null;
}

export interface CatalogTable extends Owned {
  schema: string;
  name: string;
  /** `r` ordinary, `p` partitioned. */
  kind: 'r' | 'p';
  unlogged: boolean;
  columns: CatalogColumn[];
  /** `PARTITION BY ...` clause body (`pg_get_partkeydef`) of a partitioned table. */
  partitionKey: string | null;
  /** The parent of a partition, and its bound (`FOR VALUES ...` / `DEFAULT`). */
  partitionOf: { schema: string; name: string; bound: string } | null;
  /** Parents of a (non-partition) inheritance child, in order. */
  inherits: { schema: string; name: string }[];
  /** `d` default, `n` nothing, `f` full, `i` index. */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  replicaIdentityIndex: string | null;
  options: string[];
}

export interface CatalogIndex {
  schema: string;
  table: string;
  name: string;
  /** `pg_get_indexdef`. */
  def: string;
  primary: boolean;
  replicaIdentity: boolean;
  /** Created by a PRIMARY KEY / UNIQUE / EXCLUDE constraint: built with the constraint, not on its own. */
  constraintBacked: boolean;
  /** A partition's index attached to its parent's: created by the parent's index. */
  inherited: boolean;
  /** The indexed relation is a partitioned table. */
  onPartitioned: boolean;
  comment: string | null;
}

export interface CatalogConstraint {
  schema: string;
  table: string;
  name: string;
  /** `p` primary key, `u` unique, `c` check, `f` foreign key, `x` exclusion. */
  type: 'p' | 'u' | 'c' | 'f' | 'x';
  /** `pg_get_constraintdef`, without a trailing ` NOT VALID`. */
  def: string;
  validated: boolean;
  /** Defined on this table itself (not only inherited) and not a partition's copy of its parent's. */
  local: boolean;
  onPartitioned: boolean;
  /** The constraint's index is the table's replica identity (a UNIQUE constraint used as identity). */
  replicaIdentity: boolean;
  /** A primary key's or unique constraint's index: `pg_get_indexdef` and its name (null for other kinds). */
  indexDef: string | null;
  indexName: string | null;
  /** The referenced table of a foreign key. */
  references: { schema: string; name: string } | null;
  comment: string | null;
}

export interface CatalogTrigger {
  schema: string;
  table: string;
  name: string;
  /** `pg_get_triggerdef`. */
  def: string;
  /** `O` origin/local (normal), `D` disabled, `R` replica only, `A` always. */
  enabled: 'O' | 'D' | 'R' | 'A';
  comment: string | null;
}

export interface CatalogView extends Owned {
  schema: string;
  name: string;
  /** `v` view, `m` materialized view. */
  kind: 'v' | 'm';
  /** `pg_get_viewdef`. */
  def: string;
  /** Output columns with their types, e.g. `"id" integer, "email" public.citext`. */
  columns: string;
  options: string[];
  columnComments: { column: string; comment: string }[];
  /** Reads a foreign table, directly or through other views: it cannot be created on the target. */
  readsForeign: boolean;
}

export interface CatalogFunction extends Owned {
  /** Creation order on the server: types and the functions they use are created in this order. */
  oid: number;
  schema: string;
  name: string;
  /** `pg_get_function_identity_arguments`. */
  args: string;
  /** `f` function, `p` procedure, `a` aggregate, `w` window. */
  kind: 'f' | 'p' | 'a' | 'w';
  /** `pg_get_functiondef` (null for aggregates, which it cannot deparse). */
  def: string | null;
  /** A column default, domain or range type uses it: it must exist before the tables. */
  neededByPreData: boolean;
}

/** What the planner needs to know about the target server besides its catalog. */
export interface TargetFacts {
  /** Extensions the target server can install (`pg_available_extensions`). */
  availableExtensions: Set<string>;
  /** Roles that exist on the target. */
  roles: Set<string>;
  /** The role schema copy runs as: it owns what it creates, so an owner equal to it needs no ALTER. */
  currentUser: string;
  /** Roles it may give objects to (ALTER ... OWNER TO needs SET ROLE to the new owner; a superuser, any). */
  assignableOwners: Set<string>;
  /** Roles whose privileges it has: it may change the owner of what they own. */
  ownerPrivileges: Set<string>;
  /** A superuser: ownership changes need neither of the privileges below or above. */
  superuser: boolean;
  /** Schema -> the roles with CREATE on it, for the schemas that exist on the target (a new owner needs it). */
  schemaCreators: Map<string, Set<string>>;
}

/** An empty catalog: what a target without any user objects looks like. */
export function emptyCatalog(): SchemaCatalog {
  return { serverMajor: 0, schemas: [], extensions: [], types: [], sequences: [], tables: [], indexes: [], constraints: [], triggers: [], views: [], functions: [], foreignTables: [], defaultPrivileges: [] };
}
