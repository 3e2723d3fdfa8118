/**
 * Column types with edge values, as SQL expressions: for the type-fidelity and differential tests.
 * Every value is legal on PostgreSQL 14 (the oldest source).
 */

/** Objects the type columns need (types from extensions only when available on both servers). */
export function typeSetup(extensions: { citext: boolean; hstore: boolean }): string {
  return `
${extensions.citext ? 'CREATE EXTENSION IF NOT EXISTS citext;' : ''}
${extensions.hstore ? 'CREATE EXTENSION IF NOT EXISTS hstore;' : ''}
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "quoted", with \\ and ,');
CREATE DOMAIN public.posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN public.short_text AS varchar(10);
CREATE TYPE public.pair AS (a integer, b text, c numeric(6,2), ts timestamptz);
CREATE TYPE public.nest AS (p public.pair, tags text[], r int4range, m public.mood);
`;
}

export interface TypeColumn {
  name: string;
  type: string;
  /** SQL expressions, each a legal value for the column (NULL is added by the row generators). */
  values: string[];
  /** Present only when an extension is available. */
  needs?: 'citext' | 'hstore';
}

/** A text value stored out of line (TOAST): md5 hex does not compress below the TOAST threshold. */
export function bigText(seed: number, blocks = 300): string {
  return `(SELECT string_agg(md5('${seed}:' || g), '') FROM generate_series(1, ${blocks}) g)`;
}

const L = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export const TYPE_COLUMNS: TypeColumn[] = [
  { name: 'i2', type: 'smallint', values: ["'-32768'", "'32767'", "'0'"] },
  { name: 'i4', type: 'integer', values: ["'-2147483648'", "'2147483647'", "'42'"] },
  { name: 'i8', type: 'bigint', values: ["'-9223372036854775808'", "'9223372036854775807'", "'1'"] },
  { name: 'num', type: 'numeric', values: ["'NaN'", "'Infinity'", "'-Infinity'", "'0.000000000000000000001'", "'-123456789012345678901234567890.123456789'", "'1.10'", "'0.0'", "'1e-20'"] },
  { name: 'num_s', type: 'numeric(12,4)', values: ["'12345678.1235'", "'-0.0001'", "'NaN'", "'1.5'"] },
  { name: 'f4', type: 'real', values: ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'1.17549435e-38'", "'3.4028235e+38'", "'0.1'", "'1.401298e-45'", "'123456.79'"] },
  { name: 'f8', type: 'double precision', values: ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'0.1'", "'4.9e-324'", "'1.7976931348623157e308'", "'0.30000000000000004'", "'-1.2345678901234567'"] },
  { name: 'm', type: 'money', values: ["'12.34'", "'-92233720368547758.08'", "'92233720368547758.07'", "'0'"] },
  { name: 't', type: 'text', values: [L('plain'), "E'tab\\there\\nnewline\\rcr \\\\ backslash ''quote'' \"dq\"'", "''", L('zürich 😀 日本 ﬀ'), L('NULL'), L('\\N'), L('\\.'), "E'\\\\.\\n\\\\.'", L(' lead and trail '), "E'unit\\x1fand record\\x1eseparators'"] },
  { name: 'big', type: 'text', values: [bigText(1), L('short'), bigText(2, 500)] },
  { name: 'vc', type: 'varchar(10)', values: [L('abc'), L('abc   '), "''", L('0123456789')] },
  { name: 'ch', type: 'char(6)', values: [L('ab'), L('abcdef'), "''", L(' a')] },
  { name: 'by', type: 'bytea', values: ["'\\x'::bytea", "'\\x00ff5c0a0d092c225c4e'::bytea", "decode(repeat('00ff5c', 2000), 'hex')", "'\\x5c78'::bytea"] },
  { name: 'bo', type: 'boolean', values: ['true', 'false'] },
  { name: 'd', type: 'date', values: ["'infinity'", "'-infinity'", "'2024-02-29'", "'4713-01-01 BC'", "'5874897-12-31'", "'0044-03-15 BC'", "'2026-01-02'"] },
  { name: 'tm', type: 'time', values: ["'00:00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:34:56.000001'"] },
  { name: 'tm0', type: 'time(0)', values: ["'12:34:56'", "'00:00:01'"] },
  { name: 'tmtz', type: 'timetz', values: ["'12:34:56.789012+05:45'", "'00:00:00-15:59'", "'23:59:59.999999+15:59'", "'01:02:03+05:30:15'", "'10:00:00+00'"] },
  { name: 'ts', type: 'timestamp', values: ["'infinity'", "'-infinity'", "'2000-01-01 00:00:00'", "'1999-12-31 23:59:59.999999'", "'4713-01-01 00:00:00 BC'", "'294276-12-31 23:59:59.999999'", "'2026-03-29 02:30:00.5'"] },
  { name: 'ts3', type: 'timestamp(3)', values: ["'2026-01-02 03:04:05.678'", "'infinity'"] },
  {
    name: 'tstz',
    type: 'timestamptz',
    values: [
      "'infinity'", "'-infinity'", "'2026-03-29 01:30:00+00'", "'1800-01-01 00:00:00+00'", "'2000-01-01 00:00:00.000001+00'",
      "'294276-12-31 23:59:59.999999+00'", "'4713-11-24 00:00:00+00 BC'", "'1901-12-13 20:45:52+00'", "'2026-11-01 05:30:00.123456+00'",
    ],
  },
  { name: 'iv', type: 'interval', values: ["'1 year 2 mons 3 days 04:05:06.789012'", "'-1 days +02:03:04'", "'178956970 years 7 mons'", "'-178956970 years -8 mons -2147483648 days'", "'00:00:00.000001'", "'1 mon -30 days'", "'2147483647 days 596523:14:07.999999'", "'0'"] },
  { name: 'u', type: 'uuid', values: ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"] },
  { name: 'j', type: 'json', values: [L('{ "b" : 1,  "a":2, "a": 3 }'), L('[1, 2.50, 1e3, -0, "\\u00e9\\ud83d\\ude00"]'), L('  "padded"\n\t '), L('null'), L('{"nested": {"k": [true, false, null]}, "": ""}')] },
  { name: 'jb', type: 'jsonb', values: [L('{"z": [1, 2.50], "a": null, "a": 1}'), L('1e3'), L('"\\u00e9\\ud83d\\ude00 \\" \\\\"'), L('[]'), L('{"n": 1.000000000000000000001, "big": 123456789012345678901234567890}')] },
  { name: 'x', type: 'xml', values: [L('<a b="1">text &amp; more</a>'), L('content fragment <b/> tail'), L('<?xml version="1.0" standalone="yes"?><root><x/></root>'), L('<a>  spaced  </a>')] },
  { name: 'ip', type: 'inet', values: ["'10.1.2.3/8'", "'::1'", "'2001:db8::ff00:42:8329/64'", "'192.168.0.1'", "'::ffff:1.2.3.4'"] },
  { name: 'cn', type: 'cidr', values: ["'10.0.0.0/8'", "'2001:db8::/32'", "'192.168.1.128/25'"] },
  { name: 'mac', type: 'macaddr', values: ["'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'"] },
  { name: 'mac8', type: 'macaddr8', values: ["'08:00:2b:01:02:03:04:05'", "'00:00:00:ff:fe:00:00:00'"] },
  { name: 'b5', type: 'bit(5)', values: ["B'10101'", "B'00000'", "B'11111'"] },
  { name: 'vb', type: 'varbit', values: ["B''", "B'1'", "B'1010101010101010101'"] },
  { name: 'vb8', type: 'varbit(8)', values: ["B'101'", "B'11110000'"] },
  { name: 'tsv', type: 'tsvector', values: [L("'a' 'fat':2 'it''s':3B 'cat':4A,5C 'white space' '\\\\back'"), "''", L('simple words here')] },
  { name: 'tsq', type: 'tsquery', values: [L("fat & (rat | !cat) <-> sat:*A"), L("'multi word' <3> x"), L('a')] },
  { name: 'pt', type: 'point', values: ["'(1.5,-2.25)'", "'(-0,0)'", "'(1e300,-1e-300)'", "'(NaN,Infinity)'"] },
  { name: 'ln', type: 'line', values: ["'{1,-1,0}'", "'{0.1,2,-3.5}'"] },
  { name: 'ls', type: 'lseg', values: ["'[(0,0),(1,1)]'", "'[(0.1,0.2),(-3,4e10)]'"] },
  { name: 'bx', type: 'box', values: ["'(1,1),(0,0)'", "'(0.1,0.2),(-3,-4)'"] },
  { name: 'pa', type: 'path', values: ["'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1),(2,0))'"] },
  { name: 'pg', type: 'polygon', values: ["'((0,0),(1,1),(1,0))'", "'((0.1,0.2))'"] },
  { name: 'ci', type: 'circle', values: ["'<(0,0),1.5>'", "'<(0.1,-0.2),0>'"] },
  { name: 'r4', type: 'int4range', values: ["'[1,10)'", "'empty'", "'(,5]'", "'[3,)'"] },
  { name: 'r8', type: 'int8range', values: ["'[-9223372036854775808,9223372036854775807)'", "'empty'"] },
  { name: 'rn', type: 'numrange', values: ["'[1.5,2.50]'", "'(,)'", "'(-1e-30,1e30]'", "'[NaN,NaN]'"] },
  { name: 'rts', type: 'tsrange', values: ["'[\"2026-01-01 00:00:00.000001\",infinity)'", "'(,\"2000-01-01 00:00:00\"]'"] },
  { name: 'rtstz', type: 'tstzrange', values: ["'[\"2026-01-01 00:00:00+05:45\",\"2026-06-01 00:00:00-03:30\")'", "'[-infinity,infinity]'"] },
  { name: 'rd', type: 'daterange', values: ["'[2024-02-29,2024-03-01]'", "'[infinity,infinity]'", "'empty'"] },
  { name: 'mr4', type: 'int4multirange', values: ["'{[1,3),[5,7)}'", "'{}'", "'{(,0),[10,)}'"] },
  { name: 'mrtstz', type: 'tstzmultirange', values: ["'{[\"2026-01-01 00:00:00+00\",\"2026-01-02 00:00:00.5+00\")}'", "'{}'"] },
  { name: 'mrn', type: 'nummultirange', values: ["'{[1.10,2.20],(3,)}'"] },
  { name: 'a_i', type: 'integer[]', values: ["'{{1,NULL,3},{4,5,6}}'", "'{}'", "'[0:2]={1,2,3}'", "'{NULL}'", "'[-2:-1][3:3]={{7},{8}}'"] },
  { name: 'a_t', type: 'text[]', values: [`'{"a b","NULL",NULL,"q\\"uote","back\\\\slash","",",","{}"}'`, "'{{x,y},{z,NULL}}'", `ARRAY[E'tab\\there', E'new\\nline', '\\N']`] },
  { name: 'a_3d', type: 'integer[]', values: ["'{{{1,2},{3,4}},{{5,6},{NULL,8}}}'"] },
  { name: 'a_tstz', type: 'timestamptz[]', values: [`'{"2026-01-01 00:00:00.000001+00",infinity,NULL,"1800-01-01 00:00:00+00"}'`] },
  { name: 'a_d', type: 'date[]', values: ["'{2024-02-29,infinity,NULL}'", "'{\"0044-03-15 BC\"}'"] },
  { name: 'a_iv', type: 'interval[]', values: ["ARRAY['1 day 00:00:00.000001'::interval, '-1 mons'::interval, NULL]"] },
  { name: 'a_n', type: 'numeric[]', values: ["'{NaN,Infinity,-Infinity,1.10,NULL}'"] },
  { name: 'a_f', type: 'double precision[]', values: ["'{-0,NaN,Infinity,0.1,1e-310}'"] },
  { name: 'a_f4', type: 'real[]', values: ["'{-0,NaN,-Infinity,0.1}'"] },
  { name: 'a_jb', type: 'jsonb[]', values: [`ARRAY['{"a": 1, "b": [null, "x\\"y"]}'::jsonb, NULL, '"s"'::jsonb]`] },
  { name: 'a_j', type: 'json[]', values: [`ARRAY['{ "k" :  1 , "k": 2 }'::json, NULL]`] },
  { name: 'a_by', type: 'bytea[]', values: ["ARRAY['\\x00ff'::bytea, NULL, '\\x'::bytea, '\\x5c'::bytea]"] },
  { name: 'a_u', type: 'uuid[]', values: ["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"] },
  { name: 'a_ip', type: 'inet[]', values: ["'{10.0.0.1/8,::1,NULL}'"] },
  { name: 'a_bit', type: 'varbit[]', values: ["'{1010,\"\",NULL}'"] },
  { name: 'a_pt', type: 'point[]', values: [`'{"(1,2)","(-0,NaN)",NULL}'`] },
  { name: 'a_r', type: 'int4range[]', values: [`'{"[1,2)",empty,NULL}'`] },
  { name: 'a_mood', type: 'public.mood[]', values: [`ARRAY['sad', 'it''s "quoted", with \\ and ,', NULL]::public.mood[]`] },
  { name: 'a_pair', type: 'public.pair[]', values: [`ARRAY[ROW(1, 'x,"y"', 1.5, '2026-01-01 00:00:00.5+00')::public.pair, NULL, ROW(NULL, NULL, NULL, NULL)::public.pair]`] },
  { name: 'a_dom', type: 'public.posint[]', values: ["'{1,2,NULL}'"] },
  { name: 'e', type: 'public.mood', values: ["'sad'", `'it''s "quoted", with \\ and ,'`, "'happy'"] },
  { name: 'dom', type: 'public.posint', values: ['1', '2147483647'] },
  { name: 'dom_t', type: 'public.short_text', values: [L('abc  '), "''"] },
  {
    name: 'comp',
    type: 'public.pair',
    values: [`ROW(1, 'a,b "c" \\ d', 12.5, '2026-01-01 00:00:00.123456+00')::public.pair`, 'ROW(NULL, NULL, NULL, NULL)::public.pair', `ROW(0, '', 'NaN', 'infinity')::public.pair`, `ROW(-1, '()', -0.01, '1800-01-01 00:00:00+00')::public.pair`],
  },
  {
    name: 'nest',
    type: 'public.nest',
    values: [`ROW(ROW(2, 'in"ner', 1.25, '2026-05-05 05:05:05+00')::public.pair, '{a,"b c",NULL}', '[1,5)', 'ok')::public.nest`, 'ROW(NULL, NULL, NULL, NULL)::public.nest'],
  },
  { name: 'lsn', type: 'pg_lsn', values: ["'16/B374D848'", "'0/0'", "'FFFFFFFF/FFFFFFFF'"] },
  { name: 'ch1', type: '"char"', values: ["'a'", "'\\'"] },
  { name: 'nm', type: 'name', values: ["'some_name'", "'With Space \"Q\"'"] },
  { name: 'oi', type: 'oid', values: ["'4294967295'", "'0'"] },
  { name: 'cit', type: 'public.citext', values: [L('MiXeD Case'), L('straße')], needs: 'citext' },
  { name: 'hs', type: 'public.hstore', values: [`'"a"=>"1", "b"=>NULL, "key with space"=>"v\\"q", "c"=>"\\\\"'`, "''"], needs: 'hstore' },
];

/** The columns usable with these extensions. */
export function typeColumns(extensions: { citext: boolean; hstore: boolean }): TypeColumn[] {
  return TYPE_COLUMNS.filter((c) => !c.needs || extensions[c.needs]);
}

/** Which of citext and hstore both servers can install. */
export async function availableExtensions(clients: { query(sql: string): Promise<{ rows: { name: string }[] }> }[]): Promise<{ citext: boolean; hstore: boolean }> {
  const sets = await Promise.all(clients.map(async (c) => new Set((await c.query(`SELECT name FROM pg_available_extensions WHERE name IN ('citext', 'hstore')`)).rows.map((r) => r.name))));
  return { citext: sets.every((s) => s.has('citext')), hstore: sets.every((s) => s.has('hstore')) };
}
