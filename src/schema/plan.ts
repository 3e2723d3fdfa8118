import { ident, qualified, type TableName } from '../pg/connection.js';
import type { BuiltSchema, SchemaObject } from './ddl.js';
import type { SchemaCatalog, TargetFacts } from './model.js';

/** What schema copy will run on the target, and what stops it. */
export interface SchemaPlan {
  preData: SchemaObject[];
  postData: SchemaObject[];
  /** One line each: an object that exists on the target but differs, or an extension the target lacks. */
  conflicts: string[];
  /** Things left out on purpose, one line each. */
  notes: string[];
  /** Objects that already exist on the target and match. */
  unchanged: number;
}

/**
 * Narrows a catalog to the selected tables (and their partitions): their indexes, constraints,
 * triggers and the sequences they own. Schemas, extensions, types, functions and default
 * privileges stay (tables may use any of them; defaults are not per table); views are left out
 * (they may read tables that are not migrated), and so are foreign keys to tables that are not
 * selected. Pure.
 */
export function scopeCatalog(catalog: SchemaCatalog, selected: TableName[]): { catalog: SchemaCatalog; notes: string[] } {
  if (selected.length === 0) return { catalog, notes: [] };
  const notes: string[] = [];
  const key = (schema: string, name: string): string => `${schema}\u0000${name}`;
  const inScope = new Set(selected.map((t) => key(t.schema, t.name)));
  for (let grew = true; grew; ) {
    grew = false;
    for (const t of catalog.tables) {
      if (t.partitionOf && inScope.has(key(t.partitionOf.schema, t.partitionOf.name)) && !inScope.has(key(t.schema, t.name))) {
        inScope.add(key(t.schema, t.name));
        grew = true;
      }
    }
  }
  const has = (schema: string, name: string): boolean => inScope.has(key(schema, name));
  const constraints = catalog.constraints.filter((c) => {
    if (!has(c.schema, c.table)) return false;
    if (c.type === 'f' && c.references && !has(c.references.schema, c.references.name)) {
      notes.push(`foreign key ${ident(c.name)} on ${qualified({ schema: c.schema, name: c.table })} is not copied: it references ${qualified(c.references)}, which is not among --tables`);
      return false;
    }
    return true;
  });
  if (catalog.views.length > 0) notes.push(`views and materialized views are not copied when --tables is given (${catalog.views.length} on the source)`);
  return {
    notes,
    catalog: {
      ...catalog,
      tables: catalog.tables.filter((t) => has(t.schema, t.name)),
      indexes: catalog.indexes.filter((x) => has(x.schema, x.table)),
      constraints,
      triggers: catalog.triggers.filter((t) => has(t.schema, t.table)),
      views: [],
      foreignTables: [],
      sequences: catalog.sequences.map((s) => (s.ownedBy && !has(s.ownedBy.schema, s.ownedBy.table) ? { ...s, ownedBy: null, linkedElsewhere: true } : s)),
    },
  };
}

/** The first aspect in which two objects differ, for a one-line message. */
export function firstDifference(source: SchemaObject, target: SchemaObject, sameMajor = true): string | null {
  const aspects = [...new Set([...Object.keys(source.details), ...Object.keys(target.details)])].filter((a) => sameMajor || !source.loose?.includes(a));
  for (const a of aspects) {
    const s = source.details[a];
    const t = target.details[a];
    if (s !== t) return `${a}: ${s === undefined ? 'absent' : short(s)} on the source, ${t === undefined ? 'absent' : short(t)} on the target`;
  }
  return null;
}

function short(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/**
 * Compares the source's objects with the target's (`target` null: an empty target, as for a
 * printed script) and decides what runs: a missing object is created; one that matches is left
 * alone; one that differs is a conflict (or re-applied for comments, owners, grants, replica
 * identity and validation). Objects naming a role the target lacks are skipped with a note. A
 * partition whose parent already exists on the target is left to the target: rows travel through
 * the root, so the target may be partitioned differently. Pure.
 */
export function planSchema(source: BuiltSchema, target: BuiltSchema | null, facts: TargetFacts | null): SchemaPlan {
  const existing = new Map((target?.objects ?? []).map((o) => [o.key, o]));
  const plan: SchemaPlan = { preData: [], postData: [], conflicts: [], notes: [...source.notes], unchanged: 0 };
  const skippedTables = new Set<string>();
  const missingRoles = new Set<string>();
  /** Roles whose default privileges the target role may not change. */
  const defaultsRefused = new Set<string>();
  /** Why an ownership change would fail (see {@link ownerProblems}) -> the objects it is about. */
  const problems = new Map<string, string[]>();
  /** Schemas whose owner the plan changes (before the objects in them: schemas come first), to whom. */
  const newSchemaOwners = new Map<string, string>();
  for (const o of source.objects) {
    const there = existing.get(o.key);
    if (!there) {
      if (o.table && skippedTables.has(o.table)) continue;
      if (o.partitionOf && existing.has(o.partitionOf)) {
        skippedTables.add(o.key);
        plan.notes.push(`${o.label} is not created: ${o.partitionOf} already exists on the target and keeps its own partitions`);
        continue;
      }
      if (o.extension && facts && !facts.availableExtensions.has(o.extension)) {
        plan.conflicts.push(`target: extension ${o.extension} (used on the source) is not available on the target server; install the extension's package on the target server, or start with --schema-copy=false and create the schema yourself`);
        continue;
      }
    }
    if (!there && o.key.startsWith('owner of ') && facts && o.details['owner'] === facts.currentUser) continue;
    const lacking = facts ? o.roles.filter((r) => !facts.roles.has(r)) : [];
    if (lacking.length > 0) {
      for (const r of lacking) missingRoles.add(r);
      continue;
    }
    if (there && o.mode !== 'always') {
      const diff = firstDifference(o, there, source.serverMajor === target?.serverMajor);
      if (diff === null) {
        plan.unchanged++;
        continue;
      }
      if (o.mode === 'create') {
        plan.conflicts.push(`target: ${o.label} differs from the source (${diff}); change or drop it on the target, or start with --schema-copy=false`);
        continue;
      }
    }
    if (o.defaultsOf && facts && !mayAlterDefaults(o.defaultsOf, facts, target?.serverMajor)) {
      defaultsRefused.add(o.defaultsOf);
      continue;
    }
    const found = facts && o.owned ? ownerProblems(o, o.owned, facts, { source, existing, newSchemaOwners }) : [];
    for (const problem of found) problems.set(problem, [...(problems.get(problem) ?? []), o.key.slice('owner of '.length)]);
    if (found.length > 0) continue;
    if (o.owned?.isSchema) newSchemaOwners.set(o.owned.schema, o.details['owner']!);
    (o.phase === 'pre-data' ? plan.preData : plan.postData).push(o);
  }
  for (const [problem, objects] of problems) {
    plan.conflicts.push(
      `target: ${problem.replace('%s', `${objects[0]}${objects.length > 1 ? ` and ${objects.length - 1} more` : ''}`)}, connect as a superuser, or start with --schema-copy=false and create the schema yourself`,
    );
  }
  for (const role of defaultsRefused) {
    const member = facts!.assignableOwners.has(role);
    const remedy = member ? `GRANT ${ident(role)} TO ${ident(facts!.currentUser)} WITH INHERIT TRUE (PostgreSQL 16+) or ALTER ROLE ${ident(facts!.currentUser)} INHERIT` : `GRANT ${ident(role)} TO ${ident(facts!.currentUser)}`;
    plan.notes.push(`default privileges for role ${role} are not copied: changing them needs role ${role}'s privileges, which role ${facts!.currentUser} lacks; run ${remedy} and pgferry schema again, or set them on the target by hand`);
  }
  for (const r of missingRoles) plan.notes.push(`role ${r} does not exist on the target: ownership and privileges naming it are not copied (create the role on the target to have them copied)`);
  return plan;
}

/**
 * Whether the target role may run `ALTER DEFAULT PRIVILEGES FOR ROLE role`: it needs the role's
 * privileges from PostgreSQL 16 on, membership before (the target's major version unknown: the former).
 */
function mayAlterDefaults(role: string, facts: TargetFacts, targetMajor: number | undefined): boolean {
  return facts.superuser || (targetMajor !== undefined && targetMajor < 16 ? facts.assignableOwners : facts.ownerPrivileges).has(role);
}

/**
 * Why `ALTER ... OWNER TO` of an object would fail for a non-superuser target role, each with its
 * remedy (`%s` stands for the objects). The role must have the privileges of the object's current
 * owner on the target, be able to SET ROLE to the new owner and inherit its privileges (the later
 * grants and apply act on what it gave away); the new owner needs CREATE on the object's schema.
 * Schemas change owner first and get their grants only after the owners: in a schema that schema
 * copy creates or gives away, the new owner has CREATE only as the schema's new owner, or (in an
 * existing schema) by a privilege it holds other than as the schema's old owner.
 */
function ownerProblems(
  o: SchemaObject,
  owned: NonNullable<SchemaObject['owned']>,
  facts: TargetFacts,
  plan: { source: BuiltSchema; existing: Map<string, SchemaObject>; newSchemaOwners: Map<string, string> },
): string[] {
  if (facts.superuser) return [];
  const owner = o.details['owner']!;
  const user = facts.currentUser;
  const problems: string[] = [];
  const current = plan.existing.get(o.key)?.details['owner'];
  if (current !== undefined && !facts.ownerPrivileges.has(current)) {
    problems.push(`role ${user} cannot take objects from role ${current}, which owns %s on the target; run GRANT ${ident(current)} TO ${ident(user)}`);
  }
  if (!facts.assignableOwners.has(owner)) {
    problems.push(`role ${user} cannot give objects to role ${owner}, which owns %s on the source (schema copy sets the same owners); run GRANT ${ident(owner)} TO ${ident(user)}`);
  } else if (!facts.ownerPrivileges.has(owner)) {
    // Without them it cannot even use a schema it has given away, nor grant on what it gave.
    problems.push(
      `role ${user} is a member of role ${owner} without its privileges (NOINHERIT), which it needs to go on with %s once ${owner} owns it; run GRANT ${ident(owner)} TO ${ident(user)} WITH INHERIT TRUE (PostgreSQL 16+) or ALTER ROLE ${ident(user)} INHERIT`,
    );
  }
  // A schema's new owner needs nothing more (PostgreSQL checks CREATE on the database for the
  // role making the change, which pgferry needs anyway for its own schema).
  if (owned.isSchema) return problems;
  const creators = facts.schemaCreators.get(owned.schema);
  const schemaOwner = creators ? plan.newSchemaOwners.get(owned.schema) : sourceSchemaOwner(plan.source, owned.schema);
  const oldSchemaOwner = plan.existing.get(`owner of schema ${ident(owned.schema)}`)?.details['owner'];
  const creates = owner === schemaOwner || (creators !== undefined && creators.has(owner) && (schemaOwner === undefined || owner !== oldSchemaOwner));
  if (creates) return problems;
  const grant = `GRANT CREATE ON SCHEMA ${ident(owned.schema)} TO ${ident(owner)}`;
  problems.push(
    !creators
      ? `role ${owner}, which owns %s on the source, would have no CREATE privilege on schema ${owned.schema} (created by schema copy, owned by another role) when it takes ownership; create the schema on the target first and run ${grant}`
      : schemaOwner === undefined
        ? `role ${owner}, which owns %s on the source, has no CREATE privilege on schema ${owned.schema} on the target, which taking ownership needs; run ${grant}`
        : `role ${owner}, which owns %s on the source, would have no CREATE privilege on schema ${owned.schema} once schema copy gives the schema to role ${schemaOwner}; run ${grant}`,
  );
  return problems;
}

/** The owner schema copy gives `schema` (its creator, the target role, when the source's owner is skipped). */
function sourceSchemaOwner(source: BuiltSchema, schema: string): string | undefined {
  return source.objects.find((o) => o.owned?.isSchema && o.owned.schema === schema)?.details['owner'];
}

/** The plan as an SQL script for a human to review: pre-data and post-data clearly separated. */
export function renderPlan(plan: SchemaPlan, header: string[]): string {
  const out: string[] = header.map((h) => `-- ${h}`);
  for (const n of plan.notes) out.push(`-- note: ${n}`);
  for (const c of plan.conflicts) out.push(`-- CONFLICT: ${c}`);
  const section = (title: string, objects: SchemaObject[]): void => {
    out.push('', `-- ===== ${title} (${objects.length} object${objects.length === 1 ? '' : 's'}) =====`);
    for (const o of objects) {
      out.push('', `-- ${o.label}`);
      for (const s of o.statements) out.push(`${s};`);
    }
  };
  section('pre-data: before the initial copy', plan.preData);
  section('post-data: after the initial copy', plan.postData);
  return `${out.join('\n')}\n`;
}
