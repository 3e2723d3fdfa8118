import type pg from 'pg';
import { ConfigError } from '../errors.js';
import { clientConfig, type TableName } from '../pg/connection.js';
import { emptyTableList, parseTableName, splitList } from '../config/settings.js';

/** Validated connection and table options shared by `pgferry schema` and `pgferry verify`. */
export interface CommandConnections {
  source: pg.ClientConfig;
  target: pg.ClientConfig | null;
  tables: TableName[];
}

/**
 * Reads --source / --target (falling back to PGFERRY_SOURCE_URL / PGFERRY_TARGET_URL) and --tables,
 * and reports every problem at once as one {@link ConfigError} (exit code 2).
 */
export function commandConnections(flags: { source?: string; target?: string; tables?: string }, opts: { targetRequired: boolean }, env: NodeJS.ProcessEnv = process.env): CommandConnections {
  const problems: string[] = [];
  const url = (flag: string, envName: string, value: string | undefined, required: boolean): pg.ClientConfig | null => {
    const v = (value ?? env[envName] ?? '').trim();
    if (!v) {
      if (required) problems.push(`${flag} (or ${envName}) is required: the database URL, e.g. postgresql://user@host:5432/db`);
      return null;
    }
    try {
      return clientConfig(value !== undefined ? flag : envName, v);
    } catch (err) {
      problems.push((err as Error).message);
      return null;
    }
  };
  const source = url('--source', 'PGFERRY_SOURCE_URL', flags.source, true);
  const target = url('--target', 'PGFERRY_TARGET_URL', flags.target, opts.targetRequired);
  let tables: TableName[] = [];
  if (flags.tables !== undefined) {
    const list = splitList(flags.tables);
    if (list.length === 0) problems.push(emptyTableList('--tables'));
    try {
      tables = list.map(parseTableName);
    } catch (err) {
      problems.push(`--tables: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0 || !source) throw new ConfigError(problems.join('\n'));
  return { source, target, tables };
}

