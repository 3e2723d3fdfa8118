import type pg from 'pg';
import type { CatalogColumn, CatalogConstraint, CatalogDefaultPrivileges, CatalogExtension, CatalogFunction, CatalogIndex, CatalogSchema, CatalogSequence, CatalogTable, CatalogTrigger, CatalogType, CatalogView, SchemaCatalog, TargetFacts } from './model.js';

/** Schemas that never hold objects pgferry copies (`n` is pg_namespace). */
const USER_SCHEMA = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;

/** Not a member of an extension (those come with `CREATE EXTENSION`). */
const notExtensionMember = (catalog: string, oid: string): string =>
  `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '${catalog}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;

/** Grants on an object other than its owner's own, as JSON. */
const grants = (acl: string, owner: string): string =>
  `(SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
        'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY a.grantee, a.privilege_type), '[]') FROM pg_catalog.aclexplode(${acl}) a WHERE a.grantee <> ${owner})`;

/** `privilege` when PUBLIC, which has it by default, lacks it in `acl` (revoked on the source); else null. */
const revokedFromPublic = (acl: string, privilege: string): string =>
  `CASE WHEN ${acl} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(${acl}) a WHERE a.grantee = 0 AND a.privilege_type = '${privilege}') THEN '${privilege}' END`;

/** A collation's qualified name, or null when it is the type's default. */
const collationName = (oid: string, typeDefault: string): string =>
  `(SELECT pg_catalog.format('%I.%I', cn.nspname, co.collname) FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
     WHERE co.oid = ${oid} AND ${oid} <> 0 AND ${oid} <> ${typeDefault})`;

/**
 * Reads every user object of the connected database (outside system schemas, `pgferry` and
 * extension members). Runs in one read-only repeatable-read transaction with an empty `search_path`,
 * so the result is consistent and every deparsed name is qualified. Works on PostgreSQL 14 and later.
 */
export async function readCatalog(client: pg.Client): Promise<SchemaCatalog> {
  await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
  try {
    await client.query(`SET LOCAL search_path = ''`);
    const q = async <T>(sql: string): Promise<T[]> => (await client.query(sql)).rows as T[];
    const schemas = await q<CatalogSchema>(`
      SELECT n.nspname AS name, pg_catalog.pg_get_userbyid(n.nspowner) AS owner, ${grants('n.nspacl', 'n.nspowner')} AS grants,
             pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment
        FROM pg_catalog.pg_namespace n WHERE ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_namespace', 'n.oid')} ORDER BY n.nspname`);
    const extensions = await q<CatalogExtension>(`
      SELECT e.extname AS name, n.nspname AS schema, e.extversion AS version
        FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ORDER BY e.oid`);
    const types = await q<CatalogType>(`
      SELECT t.oid::int8::float8 AS oid, n.nspname AS schema, t.typname AS name, t.typtype AS kind, pg_catalog.pg_get_userbyid(t.typowner) AS owner,
             ${grants('t.typacl', 't.typowner')} AS grants, ${revokedFromPublic('t.typacl', 'USAGE')} AS "revokedFromPublic", pg_catalog.obj_description(t.oid, 'pg_type') AS comment,
             ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels,
             CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END AS "baseType",
             CASE WHEN t.typtype = 'd' THEN pg_catalog.pg_get_expr(t.typdefaultbin, 0) END AS "defaultExpr",
             t.typnotnull AS "notNull",
             CASE WHEN t.typtype = 'd' THEN ${collationName('t.typcollation', '(SELECT bt.typcollation FROM pg_catalog.pg_type bt WHERE bt.oid = t.typbasetype)')} END AS collation,
             (SELECT coalesce(json_agg(json_build_object('name', c.conname, 'def', pg_catalog.pg_get_constraintdef(c.oid)) ORDER BY c.conname), '[]')
                FROM pg_catalog.pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') AS checks,
             (SELECT coalesce(json_agg(json_build_object('name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                       'collation', ${collationName('a.attcollation', '(SELECT at.typcollation FROM pg_catalog.pg_type at WHERE at.oid = a.atttypid)')}) ORDER BY a.attnum), '[]')
                FROM pg_catalog.pg_attribute a WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attributes,
             (SELECT json_build_object('subtype', pg_catalog.format_type(r.rngsubtype, NULL),
                       'opclass', (SELECT pg_catalog.format('%I.%I', on_.nspname, oc.opcname) FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.opcnamespace
                                    WHERE oc.oid = r.rngsubopc AND NOT oc.opcdefault),
                       'collation', ${collationName('r.rngcollation', '(SELECT st.typcollation FROM pg_catalog.pg_type st WHERE st.oid = r.rngsubtype)')},
                       'subtypeDiff', CASE WHEN r.rngsubdiff <> 0 THEN r.rngsubdiff::regproc::text END,
                       'multirange', pg_catalog.format_type(r.rngmultitypid, NULL))
                FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid) AS range
        FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
       WHERE ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_type', 't.oid')}
         AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c'))
       ORDER BY t.oid`);
    const sequences = await q<CatalogSequence>(`
      SELECT n.nspname AS schema, c.relname AS name, pg_catalog.format_type(s.seqtypid, NULL) AS "dataType", s.seqstart::text AS start,
             s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max, s.seqcache::text AS cache, s.seqcycle AS cycle,
             pg_catalog.pg_get_userbyid(c.relowner) AS owner, ${grants('c.relacl', 'c.relowner')} AS grants, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
             (SELECT json_build_object('schema', tn.nspname, 'table', tc.relname, 'column', a.attname)
                FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
                JOIN pg_catalog.pg_attribute a ON a.attrelid = tc.oid AND a.attnum = d.refobjsubid
               WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'a') AS "ownedBy"
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'S' AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i')
       ORDER BY n.nspname, c.relname`);
    const tables = (
      await q<Omit<CatalogTable, 'columns'> & { columns: CatalogColumn[] | null }>(`
      SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind, c.relpersistence = 'u' AS unlogged,
             pg_catalog.pg_get_userbyid(c.relowner) AS owner, ${grants('c.relacl', 'c.relowner')} AS grants, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
             CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS "partitionKey",
             CASE WHEN c.relispartition THEN (SELECT json_build_object('schema', pn.nspname, 'name', pc.relname, 'bound', pg_catalog.pg_get_expr(c.relpartbound, c.oid))
                FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
               WHERE i.inhrelid = c.oid) END AS "partitionOf",
             (SELECT coalesce(json_agg(json_build_object('schema', pn.nspname, 'name', pc.relname) ORDER BY i.inhseqno), '[]')
                FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
               WHERE i.inhrelid = c.oid AND NOT c.relispartition) AS inherits,
             c.relreplident AS "replicaIdentity",
             (SELECT ic.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisreplident) AS "replicaIdentityIndex",
             coalesce(c.reloptions, '{}') AS options,
             (SELECT json_agg(json_build_object(
                        'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
                        'collation', ${collationName('a.attcollation', 't.typcollation')},
                        'notNull', a.attnotnull,
                        'defaultExpr', CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
                        'identity', a.attidentity,
                        'identitySequence', CASE WHEN a.attidentity <> '' THEN (
                           SELECT json_build_object('schema', sn.nspname, 'name', sc.relname, 'dataType', pg_catalog.format_type(s.seqtypid, NULL),
                                    'start', s.seqstart::text, 'increment', s.seqincrement::text, 'min', s.seqmin::text, 'max', s.seqmax::text,
                                    'cache', s.seqcache::text, 'cycle', s.seqcycle)
                             FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class sc ON sc.oid = d.objid JOIN pg_catalog.pg_sequence s ON s.seqrelid = sc.oid
                             JOIN pg_catalog.pg_namespace sn ON sn.oid = sc.relnamespace
                            WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = a.attnum AND d.deptype = 'i' LIMIT 1) END,
                        'generated', a.attgenerated,
                        'generatedExpr', CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END,
                        'isLocal', a.attislocal,
                        'comment', pg_catalog.col_description(c.oid, a.attnum)) ORDER BY a.attnum)
                FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
               WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY n.nspname, c.relname`)
    ).map((t) => ({ ...t, columns: t.columns ?? [] }));
    const indexes = await q<CatalogIndex>(`
      SELECT n.nspname AS schema, c.relname AS table, ic.relname AS name, pg_catalog.pg_get_indexdef(x.indexrelid) AS def,
             x.indisprimary AS primary, x.indisreplident AS "replicaIdentity",
             EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = x.indexrelid AND co.conrelid = x.indrelid AND co.contype IN ('p', 'u', 'x')) AS "constraintBacked",
             ic.relispartition AS inherited, c.relkind = 'p' AS "onPartitioned", pg_catalog.obj_description(ic.oid, 'pg_class') AS comment
        FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't' AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY n.nspname, c.relname, ic.relname`);
    const constraints = (
      await q<CatalogConstraint>(`
      SELECT n.nspname AS schema, c.relname AS table, co.conname AS name, co.contype AS type, pg_catalog.pg_get_constraintdef(co.oid) AS def,
             co.convalidated AS validated, co.conislocal AND co.coninhcount = 0 AND co.conparentid = 0 AS local, c.relkind = 'p' AS "onPartitioned",
             coalesce((SELECT x.indisreplident FROM pg_catalog.pg_index x WHERE x.indexrelid = co.conindid AND co.contype IN ('p', 'u')), false) AS "replicaIdentity",
             CASE WHEN co.contype IN ('p', 'u') THEN pg_catalog.pg_get_indexdef(co.conindid) END AS "indexDef",
             CASE WHEN co.contype IN ('p', 'u') THEN (SELECT ic.relname FROM pg_catalog.pg_class ic WHERE ic.oid = co.conindid) END AS "indexName",
             CASE WHEN co.contype = 'f' THEN (SELECT json_build_object('schema', rn.nspname, 'name', rc.relname) FROM pg_catalog.pg_class rc
                JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace WHERE rc.oid = co.confrelid) END AS "references",
             pg_catalog.obj_description(co.oid, 'pg_constraint') AS comment
        FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_class c ON c.oid = co.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE co.contype IN ('p', 'u', 'c', 'f', 'x') AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
         AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY n.nspname, c.relname, co.conname`)
    ).map((c) => ({ ...c, def: c.def.replace(/ NOT VALID$/, '') }));
    const triggers = await q<CatalogTrigger>(`
      SELECT n.nspname AS schema, c.relname AS table, t.tgname AS name, pg_catalog.pg_get_triggerdef(t.oid) AS def, t.tgenabled AS enabled,
             pg_catalog.obj_description(t.oid, 'pg_trigger') AS comment
        FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY n.nspname, c.relname, t.tgname`);
    const foreignTables = await q<SchemaCatalog['foreignTables'][number]>(`
      SELECT n.nspname AS schema, c.relname AS name,
             (SELECT pg_catalog.format('%I.%I', pn.nspname, p.relname) FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition) AS "partitionOf"
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'f' AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY n.nspname, c.relname`);
    const views = await q<CatalogView>(`
      WITH RECURSIVE reads_foreign(oid) AS (
        SELECT r.ev_class FROM pg_catalog.pg_rewrite r
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass
          JOIN pg_catalog.pg_class f ON f.oid = d.refobjid AND f.relkind = 'f'
         WHERE r.rulename = '_RETURN'
        UNION
        SELECT r.ev_class FROM reads_foreign rf
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = rf.oid
          JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid AND r.rulename = '_RETURN'
      )
      SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind, pg_catalog.pg_get_viewdef(c.oid) AS def, coalesce(c.reloptions, '{}') AS options,
             c.oid IN (SELECT oid FROM reads_foreign) AS "readsForeign",
             (SELECT coalesce(string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum), '')
                FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
             pg_catalog.pg_get_userbyid(c.relowner) AS owner, ${grants('c.relacl', 'c.relowner')} AS grants, pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
             (SELECT coalesce(json_agg(json_build_object('column', a.attname, 'comment', pg_catalog.col_description(c.oid, a.attnum)) ORDER BY a.attnum), '[]')
                FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND pg_catalog.col_description(c.oid, a.attnum) IS NOT NULL) AS "columnComments"
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('v', 'm') AND ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_class', 'c.oid')}
       ORDER BY c.oid`);
    const functions = await q<CatalogFunction>(`
      SELECT p.oid::int8::float8 AS oid, n.nspname AS schema, p.proname AS name, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args, p.prokind AS kind,
             CASE WHEN p.prokind <> 'a' THEN pg_catalog.pg_get_functiondef(p.oid) END AS def,
             pg_catalog.pg_get_userbyid(p.proowner) AS owner, ${grants('p.proacl', 'p.proowner')} AS grants, ${revokedFromPublic('p.proacl', 'EXECUTE')} AS "revokedFromPublic", pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
             EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_proc'::regclass AND d.refobjid = p.oid
                       AND (d.classid IN ('pg_catalog.pg_attrdef'::regclass, 'pg_catalog.pg_type'::regclass)
                            OR (d.classid = 'pg_catalog.pg_constraint'::regclass AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.oid = d.objid AND c.contypid <> 0)))) AS "neededByPreData"
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
       WHERE ${USER_SCHEMA} AND ${notExtensionMember('pg_catalog.pg_proc', 'p.oid')}
         -- range and multirange constructors belong to their type
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'i')
       ORDER BY p.oid`);
    const defaultPrivileges = await q<CatalogDefaultPrivileges>(`
      SELECT pg_catalog.pg_get_userbyid(d.defaclrole) AS role, n.nspname AS schema, d.defaclobjtype AS kind, ${grants('d.defaclacl', 'd.defaclrole')} AS grants,
             CASE WHEN d.defaclnamespace = 0 THEN ARRAY(
               SELECT a.privilege_type FROM pg_catalog.aclexplode(pg_catalog.acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's'::"char" ELSE d.defaclobjtype END, d.defaclrole)) a
                WHERE a.grantee = d.defaclrole AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(d.defaclacl) b WHERE b.grantee = d.defaclrole AND b.privilege_type = a.privilege_type)
                ORDER BY 1) ELSE '{}' END AS "selfRevoked"
        FROM pg_catalog.pg_default_acl d LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
       WHERE d.defaclnamespace = 0 OR (${USER_SCHEMA})
       ORDER BY 1, 2 NULLS FIRST, 3`);
    const { rows: [v] } = await client.query<{ major: number }>(`SELECT current_setting('server_version_num')::int / 10000 AS major`);
    await client.query('COMMIT');
    return { serverMajor: v?.major ?? 0, schemas, extensions, types, sequences, tables, indexes, constraints, triggers, views, functions, foreignTables, defaultPrivileges };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Extensions the target can install and the roles it has. */
export async function readTargetFacts(client: pg.Client): Promise<TargetFacts> {
  const ext = await client.query<{ name: string }>('SELECT name FROM pg_catalog.pg_available_extensions');
  // PostgreSQL 16 split SET from membership; before it, a member may give objects to the role.
  const roles = await client.query<{ name: string; current: boolean; superuser: boolean; assignable: boolean; privileges: boolean }>(
    `SELECT rolname AS name, rolname = current_user AS current, rolsuper AS superuser,
            pg_catalog.pg_has_role(current_user, oid, 'USAGE') AS privileges,
            pg_catalog.pg_has_role(current_user, oid, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) AS assignable
       FROM pg_catalog.pg_roles`,
  );
  const creators = await client.query<{ schema: string; roles: string[] }>(
    `SELECT n.nspname AS schema, coalesce(array_agg(r.rolname::text) FILTER (WHERE pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')), '{}') AS roles
       FROM pg_catalog.pg_namespace n CROSS JOIN pg_catalog.pg_roles r
      WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND r.rolname !~ '^pg_'
      GROUP BY n.nspname`,
  );
  const me = roles.rows.find((r) => r.current);
  return {
    availableExtensions: new Set(ext.rows.map((r) => r.name)),
    roles: new Set(roles.rows.map((r) => r.name)),
    currentUser: me?.name ?? '',
    assignableOwners: new Set(roles.rows.filter((r) => r.assignable).map((r) => r.name)),
    ownerPrivileges: new Set(roles.rows.filter((r) => r.privileges).map((r) => r.name)),
    superuser: me?.superuser === true,
    schemaCreators: new Map(creators.rows.map((r) => [r.schema, new Set(r.roles)])),
  };
}

