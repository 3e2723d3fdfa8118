import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.js';
import { createTestDatabases, waitFor, type TestDatabases } from '../support/databases.js';
import { scrape } from '../support/metrics.js';
import { startInProcess } from '../support/pgferry.js';

const read = (path: string): string => readFileSync(fileURLToPath(new URL(`../../${path}`, import.meta.url)), 'utf8');

interface Panel {
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

/** PromQL keywords that look like identifiers. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** Metric names in a PromQL expression: identifiers that are not functions, aggregations, keywords, label names or values. */
function metricsIn(expr: string): string[] {
  const cleaned = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values
    .replace(/\{[^}]*\}/g, ' ') // matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\$\w+/g, ' '); // Grafana variables
  return [...cleaned.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .filter((m) => !/^\s*\(/.test(cleaned.slice(m.index! + m[0].length))) // functions and aggregations
    .map((m) => m[0])
    .filter((n) => !KEYWORDS.has(n.toLowerCase()))
    .map((n) => n.replace(/_(bucket|sum|count)$/, '')); // a histogram is queried through its series
}

describe('the Grafana dashboard and the Prometheus alert rules', () => {
  let db: TestDatabases;
  let app: App | undefined;
  let exported: Set<string>;

  beforeAll(async () => {
    db = await createTestDatabases('grafana');
    await db.source.query(`CREATE TABLE t (id int PRIMARY KEY)`);
    await db.target.query(`CREATE TABLE t (id int PRIMARY KEY)`);
    app = await startInProcess({ source: db.sourceUrl, target: db.targetUrl, slot: db.slot, publication: 'grafana_pub' });
    await waitFor(() => app!.status.phase === 'streaming', 'streaming');
    await waitFor(async () => (await scrape(app!)).names.has('nodejs_eventloop_lag_p99_seconds'), 'default metrics');
    exported = (await scrape(app!)).names;
  });

  afterAll(async () => {
    await app?.stop();
    await db?.drop();
  });

  it('the dashboard queries only exported metrics, through the ${datasource} variable', () => {
    const dashboard = JSON.parse(read('grafana/dashboards/pgferry.json')) as { templating: { list: { name: string; type: string; query: unknown }[] }; panels: Panel[] };
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(10);
    const queried = new Set<string>();
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid, p.title).toBe('${datasource}');
        const names = metricsIn(t.expr ?? '');
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) queried.add(n);
      }
    }
    for (const v of dashboard.templating.list) if (typeof v.query === 'object') for (const n of metricsIn(JSON.stringify(v.query).replace(/.*label_values\(([^,]+),.*/, '$1'))) queried.add(n);
    const missing = [...queried].filter((n) => !exported.has(n));
    expect(missing, `queried by the dashboard but not exported: ${missing.join(', ')}`).toEqual([]);
    // The panels the issue asks for.
    for (const n of ['pgferry_lag_bytes', 'pgferry_lag_seconds', 'pgferry_changes_applied_total', 'pgferry_phase', 'pgferry_snapshot_rows_copied_total', 'pgferry_slot_retained_wal_bytes', 'pgferry_errors_total', 'pgferry_reconnects_total', 'pgferry_cutover_step_duration_seconds']) {
      expect(queried, n).toContain(n);
    }
  });

  it('the alert rules query only exported metrics (and Prometheus own up)', () => {
    const rules = parseYaml(read('grafana/alerts.yml')) as { groups: { name: string; rules: { alert: string; expr: string; annotations: Record<string, string> }[] }[] };
    const all = rules.groups.flatMap((g) => g.rules);
    expect(all.map((r) => r.alert)).toEqual(expect.arrayContaining(['PgferryLagHigh', 'PgferrySlotRetentionHigh', 'PgferryFailed', 'PgferryNotStreaming']));
    for (const r of all) {
      expect(r.annotations['summary'], r.alert).toBeTruthy();
      const names = metricsIn(r.expr);
      expect(names.length, r.alert).toBeGreaterThan(0);
      const missing = names.filter((n) => n !== 'up' && !exported.has(n));
      expect(missing, `${r.alert}: ${r.expr}`).toEqual([]);
    }
  });

  it('the provisioning files point Grafana at the dashboards and Prometheus at the rules', () => {
    const dashboards = parseYaml(read('grafana/provisioning/dashboards/pgferry.yml')) as { providers: { options: { path: string } }[] };
    expect(dashboards.providers[0]!.options.path).toBe('/var/lib/grafana/dashboards');
    const datasources = parseYaml(read('grafana/provisioning/datasources/prometheus.yml')) as { datasources: { type: string }[] };
    expect(datasources.datasources[0]!.type).toBe('prometheus');
    const compose = read('docker-compose.yml');
    expect(compose).toContain('./grafana/dashboards:/var/lib/grafana/dashboards');
    expect(compose).toContain('./grafana/alerts.yml:/etc/prometheus/pgferry-alerts.yml');
  });
});

describe('metricsIn', () => {
  it('finds metric names, not functions, labels, keywords or variables', () => {
    expect(metricsIn('sum by (table, op) (rate(pgferry_changes_applied_total{instance=~"$instance"}[$__rate_interval]))')).toEqual(['pgferry_changes_applied_total']);
    expect(metricsIn('histogram_quantile(0.99, sum by (le) (rate(pgferry_apply_batch_duration_seconds_bucket[5m])))')).toEqual(['pgferry_apply_batch_duration_seconds']);
    expect(metricsIn('pgferry_phase{phase="streaming"} == 0 unless on (instance) (pgferry_phase{phase=~"snapshot|done"} == 1)')).toEqual(['pgferry_phase', 'pgferry_phase']);
    expect(metricsIn('a_total / on (table) b_total > 0')).toEqual(['a_total', 'b_total']);
  });
});
