import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSettings, parseTableName, type RawSettings } from '../../../src/config/settings.js';
import { ConfigError, ErrorCodes } from '../../../src/errors.js';

const SOURCE = 'postgresql://alice@source.example:5432/app';
const TARGET = 'postgresql://bob@target.example:5433/app2';
/** The smallest set of flags that loads. */
const OK = { source: SOURCE, target: TARGET };

let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgferry-settings-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `text` to a fresh file in the test directory and returns its path. */
function file(name: string, text: string): string {
  const path = join(dir, `${n++}-${name}`);
  writeFileSync(path, text);
  return path;
}

/** Runs `fn`, which must throw a ConfigError, and returns its message lines. */
function problems(fn: () => unknown): string[] {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a ConfigError').toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.code).toBe(ErrorCodes.CONFIG);
  return err.message.split('\n');
}

/** Loads with no environment unless one is given, so the test runner's variables never leak in. */
function load(flags: RawSettings & { config?: string }, env: NodeJS.ProcessEnv = {}) {
  return loadSettings(flags, env);
}

describe('loadSettings defaults', () => {
  it('fills every optional setting with its default', () => {
    const s = load(OK);
    expect(s.sourceUrl).toBe(SOURCE);
    expect(s.targetUrl).toBe(TARGET);
    expect(s.httpHost).toBe('127.0.0.1');
    expect(s.httpPort).toBe(8484);
    expect(s.slot).toBe('pgferry');
    expect(s.publication).toBe('pgferry');
    expect(s.tables).toEqual([]);
    expect(s.apiToken).toBeUndefined();
    expect(s.logLevel).toBe('info');
    expect(s.captureDdl).toBe(false);
    expect(s.streamLargeTransactions).toBe(true);
  });

  it('turns streaming of large transactions off from a flag, the environment or the file, and rejects a non-boolean', () => {
    expect(load({ ...OK, streamLargeTransactions: 'false' }).streamLargeTransactions).toBe(false);
    expect(load(OK, { PGFERRY_STREAM_LARGE_TRANSACTIONS: 'off' }).streamLargeTransactions).toBe(false);
    expect(problems(() => load(OK, { PGFERRY_STREAM_LARGE_TRANSACTIONS: 'sometimes' }))).toEqual(['PGFERRY_STREAM_LARGE_TRANSACTIONS: "sometimes" is not true or false']);
  });

  it('turns DDL capture on from a bare flag, the environment or the file, and rejects a non-boolean', () => {
    expect(load({ ...OK, captureDdl: true }).captureDdl).toBe(true);
    expect(load(OK, { PGFERRY_CAPTURE_DDL: 'on' }).captureDdl).toBe(true);
    expect(load({ ...OK, captureDdl: 'false' }, { PGFERRY_CAPTURE_DDL: 'true' }).captureDdl).toBe(false);
    expect(problems(() => load(OK, { PGFERRY_CAPTURE_DDL: 'maybe' }))).toEqual(['PGFERRY_CAPTURE_DDL: "maybe" is not true or false']);
  });

  it('accepts postgres:// as well as postgresql://', () => {
    expect(load({ source: 'postgres://h/a', target: 'POSTGRESQL://h/b' }).target.database).toBe('b');
  });
});

describe('loadSettings precedence: flags > env > config file > defaults', () => {
  const fileText = [
    'source: postgresql://h/from_file',
    'target: postgresql://h/target_from_file',
    'httpHost: 10.0.0.1',
    'httpPort: 1111',
    'slot: file_slot',
    'publication: file_pub',
    'logLevel: debug',
    'apiToken: file-token',
    'tables: [a, s.b]',
  ].join('\n');

  it('takes every setting from a YAML file when nothing else is given', () => {
    const s = load({ config: file('all.yaml', fileText) });
    expect(s.source.database).toBe('from_file');
    expect(s.target.database).toBe('target_from_file');
    expect(s.httpHost).toBe('10.0.0.1');
    expect(s.httpPort).toBe(1111);
    expect(s.slot).toBe('file_slot');
    expect(s.publication).toBe('file_pub');
    expect(s.logLevel).toBe('debug');
    expect(s.apiToken).toBe('file-token');
    expect(s.tables).toEqual([
      { schema: 'public', name: 'a' },
      { schema: 's', name: 'b' },
    ]);
  });

  it('lets the environment override the file, and flags override both', () => {
    const env = {
      PGFERRY_SOURCE_URL: 'postgresql://h/from_env',
      PGFERRY_HTTP_PORT: '2222',
      PGFERRY_SLOT: 'env_slot',
      PGFERRY_API_TOKEN: 'env-token',
      PGFERRY_TABLES: 'env_table',
    };
    const s = load({ config: file('all.yaml', fileText), httpPort: '3333', source: 'postgresql://h/from_flag' }, env);
    expect(s.source.database).toBe('from_flag'); // flag > env > file
    expect(s.httpPort).toBe(3333); // flag > env > file
    expect(s.slot).toBe('env_slot'); // env > file
    expect(s.apiToken).toBe('env-token');
    expect(s.tables).toEqual([{ schema: 'public', name: 'env_table' }]);
    expect(s.target.database).toBe('target_from_file'); // file > default
    expect(s.publication).toBe('file_pub');
    expect(s.httpHost).toBe('10.0.0.1');
  });

  it('ignores an empty environment variable', () => {
    const s = load({ config: file('all.yaml', fileText) }, { PGFERRY_SLOT: '', PGFERRY_SOURCE_URL: '' });
    expect(s.slot).toBe('file_slot');
    expect(s.source.database).toBe('from_file');
  });

  it('reads a JSON config file', () => {
    const path = file('settings.json', JSON.stringify({ source: SOURCE, target: TARGET, httpPort: 9000, tables: ['"My Schema"."T"'] }));
    const s = load({ config: path });
    expect(s.httpPort).toBe(9000);
    expect(s.tables).toEqual([{ schema: 'My Schema', name: 'T' }]);
  });

  it('finds the config file through PGFERRY_CONFIG, and --config wins over it', () => {
    const envFile = file('env.yaml', 'source: postgresql://h/env_file\ntarget: postgresql://h/t');
    const flagFile = file('flag.yaml', 'source: postgresql://h/flag_file\ntarget: postgresql://h/t');
    expect(load({}, { PGFERRY_CONFIG: envFile }).source.database).toBe('env_file');
    expect(load({ config: flagFile }, { PGFERRY_CONFIG: envFile }).source.database).toBe('flag_file');
  });

  it('accepts an empty config file', () => {
    expect(load({ ...OK, config: file('empty.yaml', '') }).slot).toBe('pgferry');
  });
});

describe('loadSettings errors', () => {
  it('reports every problem at once, each line naming the setting and where it came from', () => {
    const config = file('bad.yaml', 'publication: Bad-Pub\nlogLevel: loud\nbogus: 1\n');
    const lines = problems(() =>
      load(
        { config, source: 'mysql://u@h/db', slot: 'Bad Slot', tables: '"unterminated' },
        { PGFERRY_HTTP_PORT: 'abc', PGFERRY_TARGET_URL: 'postgresql://h' },
      ),
    );
    const expected = [
      /^--source: expected a postgresql:\/\/ URL/,
      /^PGFERRY_TARGET_URL: the URL names no database/,
      /^PGFERRY_HTTP_PORT: "abc" is not a TCP port/,
      /^--slot: "Bad Slot" is not a valid slot name/,
      new RegExp(`^publication in ${reEscape(config)}: "Bad-Pub" is not a valid publication name`),
      /^--tables: unterminated quote/,
      new RegExp(`^logLevel in ${reEscape(config)}: "loud" is not one of`),
      new RegExp(`^${reEscape(config)}: unknown setting "bogus"`),
    ];
    expect(lines, lines.join('\n')).toHaveLength(expected.length);
    for (const re of expected) expect(lines.filter((l) => re.test(l)), `${re} in\n${lines.join('\n')}`).toHaveLength(1);
  });

  it('reports an unknown key in the config file by file and key, together with other problems', () => {
    const config = file('unknown.yaml', 'sourceUrl: postgresql://h/db\n');
    const lines = problems(() => load({ config }));
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${reEscape(config)}: unknown setting "sourceUrl" \\(known: source, target,`)));
    expect(lines).toContainEqual(expect.stringMatching(/^--source \(or PGFERRY_SOURCE_URL\) is required/));
    expect(lines).toHaveLength(3);
  });

  it('names --source and --target with their environment variables when both are missing', () => {
    expect(problems(() => load({}))).toEqual([
      '--source (or PGFERRY_SOURCE_URL) is required: the source database URL, e.g. postgresql://user@host:5432/db',
      '--target (or PGFERRY_TARGET_URL) is required: the target database URL, e.g. postgresql://user@host:5432/db',
    ]);
  });

  it('treats a blank flag value as missing, naming the flag it came from', () => {
    expect(problems(() => load({ source: '  ', target: TARGET }))).toEqual([expect.stringMatching(/^--source is required/)]);
  });

  it('rejects a URL that is not postgresql://', () => {
    for (const url of ['mysql://u@h/db', 'h:5432/db', 'http://h/db']) {
      expect(problems(() => load({ source: url, target: TARGET }))).toEqual([
        '--source: expected a postgresql:// URL (for example postgresql://user@host:5432/db)',
      ]);
    }
  });

  it('rejects a URL without a database', () => {
    for (const url of ['postgresql://h', 'postgresql://h:5432/', 'postgresql://u@h/?sslmode=disable']) {
      expect(problems(() => load({ source: SOURCE, target: url }))).toEqual(['--target: the URL names no database (add /dbname to the URL)']);
    }
  });

  it('rejects an unknown sslmode', () => {
    expect(problems(() => load({ source: `${SOURCE}?sslmode=bogus`, target: TARGET }))).toEqual([
      '--source: sslmode=bogus is not one of disable, allow, prefer, require, verify-ca, verify-full',
    ]);
  });

  it('rejects an sslrootcert path that cannot be read', () => {
    const missing = join(dir, 'no-such-ca.pem');
    const lines = problems(() => load({ source: SOURCE, target: `${TARGET}?sslmode=verify-full&sslrootcert=${missing}` }));
    expect(lines).toEqual([`--target: sslrootcert file ${missing} cannot be read; fix the path or its permissions`]);
  });

  it('rejects a port that is not an integer in 0-65535', () => {
    for (const port of ['abc', '65536', '-1', '80.5', '0x50', '1e3', '']) {
      expect(problems(() => load({ ...OK, httpPort: port }))).toEqual([`--http-port: "${port}" is not a TCP port (0-65535)`]);
    }
    expect(problems(() => load(OK, { PGFERRY_HTTP_PORT: '99999' }))).toEqual(['PGFERRY_HTTP_PORT: "99999" is not a TCP port (0-65535)']);
    const config = file('port.yaml', 'httpPort: 8484.5');
    expect(problems(() => load({ ...OK, config }))).toEqual([`httpPort in ${config}: "8484.5" is not a TCP port (0-65535)`]);
  });

  it('accepts ports at both ends of the range', () => {
    expect(load({ ...OK, httpPort: '0' }).httpPort).toBe(0);
    expect(load({ ...OK, httpPort: ' 65535 ' }).httpPort).toBe(65535);
  });

  it('rejects slot and publication names PostgreSQL would not accept unquoted', () => {
    for (const slot of ['My_Slot', '1slot', 'a-b', 'a'.repeat(64), '']) {
      expect(problems(() => load({ ...OK, slot }))).toEqual([
        `--slot: "${slot}" is not a valid slot name (lower-case letters, digits and _, at most 63)`,
      ]);
    }
    expect(problems(() => load(OK, { PGFERRY_PUBLICATION: 'Pub' }))).toEqual([expect.stringMatching(/^PGFERRY_PUBLICATION: "Pub" is not a valid publication name/)]);
    expect(load({ ...OK, slot: 'a'.repeat(63), publication: '_p1' }).slot).toBe('a'.repeat(63));
  });

  it('rejects a value of the wrong type in the config file', () => {
    const config = file('types.yaml', 'httpHost: [a, b]\napiToken: {x: 1}\nslot: [s]\n');
    const lines = problems(() => load({ ...OK, config }));
    expect(lines).toContain(`httpHost in ${config}: expected a string`);
    expect(lines).toContain(`apiToken in ${config}: expected a string`);
    expect(lines).toContain(`slot in ${config}: expected a string`);
  });

  it('rejects a config file that cannot be read, naming where its path came from', () => {
    const missing = join(dir, 'missing.yaml');
    expect(problems(() => load({ ...OK, config: missing }))).toEqual([`--config: cannot read ${missing}; check the path`]);
    expect(problems(() => load(OK, { PGFERRY_CONFIG: missing }))).toEqual([`PGFERRY_CONFIG: cannot read ${missing}; check the path`]);
    expect(problems(() => load({ ...OK, config: dir }))).toEqual([`--config: cannot read ${dir}; check the path`]);
  });

  it('rejects a config file that is not valid YAML or JSON', () => {
    for (const [name, text] of [
      ['bad.yaml', 'source: [unclosed\n'],
      ['bad.json', '{"source": "a"'],
      ['duplicate.yaml', 'slot: a\nslot: b\n'],
      ['tabs.yaml', 'source: a\n\tslot: b\n'],
    ] as const) {
      const config = file(name, text);
      const lines = problems(() => load({ ...OK, config }));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^--config: ${reEscape(config)} is not valid YAML/JSON \\(.+\\)$`));
    }
  });

  it('rejects a config file that is not a mapping', () => {
    const config = file('list.yaml', '- source\n- target\n');
    expect(problems(() => load({ ...OK, config }))).toEqual([`--config: ${config} must hold a mapping of settings`]);
    const scalar = file('scalar.yaml', 'just text');
    expect(problems(() => load(OK, { PGFERRY_CONFIG: scalar }))).toEqual([`PGFERRY_CONFIG: ${scalar} must hold a mapping of settings`]);
  });

  it('never puts the password of a URL in an error message', () => {
    const urls = [
      'postgresql://u:s3cret@h/db?sslmode=bogus',
      'postgresql://u:s3cret@h',
      'postgresql://u:s3cret@h/?sslmode=require',
      'postgresql://u:s3cret@h/db?sslmode=verify-ca',
      `postgresql://u:s3cret@h/db?sslrootcert=${join(dir, 'nope.pem')}`,
      'postgresql://u:s3cret@h:notaport/db',
      'mysql://u:s3cret@h/db',
    ];
    for (const url of urls) {
      for (const [flags, env] of [
        [{ source: url, target: TARGET }, {}],
        [{ source: SOURCE }, { PGFERRY_TARGET_URL: url }],
        [{ config: file('secret.yaml', `source: "${url}"\ntarget: "${url}"\n`) }, {}],
      ] as const) {
        const message = problems(() => load(flags, env)).join('\n');
        expect(message, `${url} gave: ${message}`).not.toContain('s3cret');
      }
    }
  });
});

describe('--tables', () => {
  it('splits on commas outside double quotes and parses each name', () => {
    const s = load({ ...OK, tables: 'a, s.a ,"My Schema"."My Table", "a,b".c,,' });
    expect(s.tables).toEqual([
      { schema: 'public', name: 'a' },
      { schema: 's', name: 'a' },
      { schema: 'My Schema', name: 'My Table' },
      { schema: 'a,b', name: 'c' },
    ]);
  });

  it('reads a YAML list, one table per item', () => {
    const config = file('tables.yaml', `tables:\n  - Orders\n  - '"a,b".c'\n`);
    expect(load({ ...OK, config }).tables).toEqual([
      { schema: 'public', name: 'orders' },
      { schema: 'a,b', name: 'c' },
    ]);
  });

  it('names the setting for a table name that does not parse', () => {
    expect(problems(() => load({ ...OK, tables: 'a, "unterminated' }))).toEqual(['--tables: unterminated quote in table name "unterminated']);
    expect(problems(() => load(OK, { PGFERRY_TABLES: 'db.s.t' }))).toEqual(['PGFERRY_TABLES: table name db.s.t must be table or schema.table']);
    const config = file('tables-map.yaml', 'tables: {a: 1}\n');
    expect(problems(() => load({ ...OK, config }))).toEqual([`tables in ${config}: expected a comma-separated list of tables`]);
  });
});

describe('connection URL parameters', () => {
  it('refuses one pgferry does not read, so a misspelt sslmode never connects with the default', () => {
    expect(problems(() => load({ source: 'postgresql://u@h/db?sslmod=require', target: TARGET }))).toEqual([
      '--source: connection parameter "sslmod" is not one pgferry reads (it reads host, port, user, password, sslmode, ssl, sslrootcert, sslcert, sslkey, application_name, options, connect_timeout); fix the name or remove it',
    ]);
    expect(problems(() => load({ source: SOURCE, target: 'postgresql://u@h/db?target_session_attrs=read-write&foo=1' }))[0]).toMatch(/^--target: connection parameters "target_session_attrs", "foo" are not one pgferry reads/);
  });

  it('reads connect_timeout in seconds (0: the default 15 s), and refuses one that is not a whole number', () => {
    expect(load({ source: 'postgresql://u@h/db?connect_timeout=5', target: TARGET }).source.connectionTimeoutMillis).toBe(5_000);
    expect(load({ source: 'postgresql://u@h/db?connect_timeout=0', target: TARGET }).source.connectionTimeoutMillis).toBe(15_000);
    expect(load(OK).source.connectionTimeoutMillis).toBe(15_000);
    expect(problems(() => load({ source: 'postgresql://u@h/db?connect_timeout=soon', target: TARGET }))).toEqual(['--source: connect_timeout=soon is not a whole number of seconds']);
  });
});

describe('credentials in a connection URL', () => {
  const encodings = '@ as %40, : as %3A, / as %2F, # as %23, ? as %3F';

  it('accepts an @ or : in the password, and percent-encoded special characters', () => {
    for (const [url, user, password] of [
      ['postgresql://u:p@ss@h/db', 'u', 'p@ss'],
      ['postgresql://u:p:ss@h/db', 'u', 'p:ss'],
      ['postgresql://u%40corp:p%2Fs%23s%3F@h/db', 'u@corp', 'p/s#s?'],
    ] as const) {
      const s = load({ source: url, target: TARGET });
      expect([s.source.user, s.source.password, s.source.host, s.source.database], url).toEqual([user, password, 'h', 'db']);
    }
    expect(load({ source: 'postgresql://u@h/db?application_name=me@host', target: TARGET }).source.application_name).toBe('me@host');
  });

  it('refuses a password whose unencoded / # or ? would move the host, naming the setting and the remedy but not the password', () => {
    // Parsed as is, each would connect to host "s3" (or fail to parse), with the rest taken as the database or a parameter.
    for (const url of ['postgresql://u:s3@cret/x@h:5432/db', 'postgresql://u:s3@cret#x@h/db', 'postgresql://u:s3@cret?x@h/db', 'postgresql://u:s3cret/x@h/db', 'postgresql://u:123/s3cret@h/db']) {
      const lines = problems(() => load({ source: url, target: TARGET }));
      expect(lines, url).toEqual([`--source: the URL has an @ after its host part, as when the password holds an unencoded / # or ?; percent-encode special characters in the user name and password (${encodings})`]);
    }
  });

  it('adds the percent-encoding hint to an unparsable URL that carries credentials', () => {
    expect(problems(() => load({ source: 'postgresql://u:pw@h:notaport/db', target: TARGET }))).toEqual([
      `--source: invalid connection URL (Invalid URL); if the user name or password holds special characters, percent-encode them (${encodings})`,
    ]);
    expect(problems(() => load({ source: 'postgresql://h:notaport/db', target: TARGET }))).toEqual(['--source: invalid connection URL (Invalid URL)']);
  });
});

describe('an empty --tables', () => {
  const remedy = 'the list of tables is empty; name at least one table, or leave the setting out to migrate every table';

  it.each(['', ' ', ' , ', ',,'])('refuses the flag value %j instead of migrating every table', (value) => {
    expect(problems(() => load({ ...OK, tables: value }))).toEqual([`--tables: ${remedy}`]);
  });

  it('refuses separators alone in PGFERRY_TABLES, naming the variable', () => {
    expect(problems(() => load(OK, { PGFERRY_TABLES: ' , ' }))).toEqual([`PGFERRY_TABLES: ${remedy}`]);
  });

  it('refuses an empty list or string in the config file, naming the key', () => {
    for (const text of ['tables: []\n', "tables: ''\n", "tables: ['', ' ']\n", 'tables:\n#  - public.orders\n#  - public.items\n']) {
      const config = file('empty-tables.yaml', `source: ${SOURCE}\ntarget: ${TARGET}\n${text}`);
      expect(problems(() => load({ config }))).toEqual([`tables in ${config}: ${remedy}`]);
    }
  });

  it('still means every table when the setting is left out', () => {
    expect(load(OK).tables).toEqual([]);
  });
});

describe('parseTableName', () => {
  it.each([
    ['a', 'public', 'a'],
    ['Orders', 'public', 'orders'],
    ['s.a', 's', 'a'],
    ['Sales.Orders', 'sales', 'orders'],
    [' s . a ', 's', 'a'],
    ['"My Schema"."My Table"', 'My Schema', 'My Table'],
    ['"a,b".c', 'a,b', 'c'],
    ['"a.b"', 'public', 'a.b'],
    ['"say ""hi"""', 'public', 'say "hi"'],
    ['s."T"', 's', 'T'],
  ])('%s is %s.%s', (text, schema, name) => {
    expect(parseTableName(text)).toEqual({ schema, name });
  });

  it('rejects an unterminated quote', () => {
    expect(() => parseTableName('"My Schema.t')).toThrow('unterminated quote in table name "My Schema.t');
    expect(() => parseTableName('s."t""')).toThrow(/unterminated quote/);
  });

  it('rejects a three-part name', () => {
    expect(() => parseTableName('db.s.t')).toThrow('table name db.s.t must be table or schema.table');
    expect(() => parseTableName('"a"."b"."c"')).toThrow(/must be table or schema\.table/);
  });

  it('rejects empty parts and text after a quoted part', () => {
    for (const text of ['.a', 'a..b', 'a.', 's.a.', '""', 's.""']) {
      expect(() => parseTableName(text), text).toThrow(/empty name/);
    }
    expect(() => parseTableName('  ')).toThrow();
    expect(() => parseTableName('"a"b')).toThrow(/unexpected character after quoted name/);
  });
});

describe('libpq URL options map to the pg client configuration', () => {
  it('maps host, port, user, password and database, and defaults application_name to pgferry', () => {
    const s = load({ source: 'postgresql://alice:pa%40ss@db.example:6543/app%20db', target: TARGET });
    expect(s.source).toMatchObject({
      host: 'db.example',
      port: 6543,
      user: 'alice',
      password: 'pa@ss',
      database: 'app db',
      application_name: 'pgferry',
    });
    expect(s.target.application_name).toBe('pgferry');
    // No sslmode is libpq's prefer: TLS without verification first (negotiateSsl may settle on plaintext).
    expect(s.source.ssl).toEqual({ rejectUnauthorized: false });
    expect(load({ ...OK, source: `${SOURCE}?sslmode=allow` }).source.ssl).toBe(false);
    expect(load({ ...OK, source: `${SOURCE}?sslmode=disable` }).source.ssl).toBe(false);
  });

  it('keeps an application_name given in the URL', () => {
    expect(load({ ...OK, source: `${SOURCE}?application_name=mine` }).source.application_name).toBe('mine');
  });

  it('sslmode=verify-full with a readable sslrootcert verifies against that CA', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const ca = file('ca.pem', pem);
    const ssl = load({ ...OK, source: `${SOURCE}?sslmode=verify-full&sslrootcert=${ca}` }).source.ssl;
    expect(ssl).toBeTypeOf('object');
    const opts = ssl as { ca?: unknown; rejectUnauthorized?: unknown; checkServerIdentity?: unknown };
    expect(opts.ca).toBe(pem);
    expect(opts.rejectUnauthorized).not.toBe(false);
    expect(opts.checkServerIdentity).toBeUndefined(); // the host name is checked too
  });

  it('without sslmode in the URL: PGSSLMODE, else prefer; certificate files are kept for the TLS attempt', () => {
    const pem = 'PEM\n';
    const cert = file('client.crt', pem);
    const key = file('client.key', pem);
    expect(load({ ...OK, source: `${SOURCE}?sslcert=${cert}&sslkey=${key}` }).source.ssl).toEqual({ cert: pem, key: pem, rejectUnauthorized: false });
    expect(load({ ...OK, source: `${SOURCE}?sslmode=allow&sslcert=${cert}&sslkey=${key}` }).source.ssl).toBe(false); // plaintext first
    const saved = process.env['PGSSLMODE'];
    try {
      process.env['PGSSLMODE'] = 'disable';
      expect(load(OK).source.ssl).toBe(false);
      expect(load({ ...OK, source: `${SOURCE}?sslmode=require` }).source.ssl).toEqual({ rejectUnauthorized: false }); // the URL wins
      process.env['PGSSLMODE'] = 'sometimes';
      expect(problems(() => load(OK))).toContain('PGSSLMODE: sslmode=sometimes is not one of disable, allow, prefer, require, verify-ca, verify-full');
    } finally {
      if (saved === undefined) delete process.env['PGSSLMODE'];
      else process.env['PGSSLMODE'] = saved;
    }
  });

  it('sslmode=require encrypts without verifying', () => {
    const ssl = load({ ...OK, target: `${TARGET}?sslmode=require` }).target.ssl as { rejectUnauthorized?: unknown };
    expect(ssl).toBeTypeOf('object');
    expect(ssl.rejectUnauthorized).toBe(false);
  });

  it('sslmode=disable turns TLS off', () => {
    expect(load({ ...OK, target: `${TARGET}?sslmode=disable` }).target.ssl).toBe(false);
  });
});

/** Escapes a literal (a temp path) for use inside a RegExp. */
function reEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
