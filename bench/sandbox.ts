/**
 * The bench's own sandbox and data set: seven MariaDB servers on their own ports and state
 * directory (.reshard/bench), never the dev or test sandboxes nor the system server on 3306.
 *
 *   ctl  control schema        s0, s1  sources        t0, t1, t2  targets       r0  replica
 *
 * Lifecycle: startSandbox (stops and purges what an aborted earlier run left) → seedShop →
 * areas → stopSandbox (purged unless --keep). Topology files are written into the work
 * directory and point at these ports; plans sit next to them.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { writePlanFile } from '../src/plan/planfile.js';
import { plan as planMove } from '../src/plan/planner.js';
import { readManifest, sandboxDown, sandboxUp } from '../src/sandbox/instances.js';
import { readSchemaFile, seed } from '../src/sandbox/seed.js';
import { loadTopology } from '../src/topology/load.js';
import {
  failureNote,
  type Harness,
  INSTANCES,
  type Instance,
  log,
  type Peers,
  type ReshardCli,
  SOURCES,
  TARGETS,
} from './harness.js';

/** Everything an area needs; built once by run.ts. */
export interface BenchEnv {
  h: Harness;
  cli: ReshardCli;
  peers: Peers;
  /** Scratch files: topologies, plans, dumps (emptied at start). */
  workDir: string;
  rowsPerSource: number;
  seed: number;
  /** One control schema for every job of the run (jobs of one control DB never share ids). */
  controlDsn: string;
  /** `reshard init` ran on the control schema. */
  initialised?: boolean;
  shop: ShopJob;
}

/** The seeded shop data set and the 2 → 3 job over it, shared by copy and verify. */
export interface ShopJob {
  from: string;
  to: string;
  plan: string;
  /** Rows seeded on the sources (every row moves: target shards are new). */
  rows: number;
  tables: string[];
  database: string;
  /** The targets hold the data set: 'reshard' (reshard copy ran), 'seed' (seeded directly), or not yet. */
  targetsFilled?: 'reshard' | 'seed';
  /** Set when the plan was written by the library because `reshard plan` is not available. */
  planNote?: string;
}

export async function startSandbox(h: Harness, dir: string): Promise<void> {
  if (readManifest(dir)) {
    log(`stopping and purging a bench sandbox left in ${dir} by an earlier run`);
    await sandboxDown(dir, { purge: true });
  }
  log(`starting bench sandbox in ${dir} (ports ${h.ports.ctl}–${h.ports.r0})`);
  await sandboxUp({ dir, names: [...INSTANCES], basePort: h.ports.ctl });
}

export async function stopSandbox(dir: string, keep: boolean): Promise<void> {
  if (keep) {
    log(
      `--keep: bench sandbox left running in ${dir} (stop it with \`reshard sandbox down --dir ${dir} --purge\`)`,
    );
    return;
  }
  const stopped = await sandboxDown(dir, { purge: true });
  if (stopped.length) log(`bench sandbox stopped and purged (${stopped.join(', ')})`);
  rmSync(dir, { recursive: true, force: true });
}

export function resetWorkDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
}

interface TopologyDoc {
  version: number;
  name?: string;
  shards: Record<string, unknown>[];
  tables: { name: string; shardKey: string }[];
  groups?: unknown[];
  scheme: unknown;
}

/** Write a topology over bench instances, with the tables/groups/scheme of `base`. */
export function writeTopology(
  h: Harness,
  path: string,
  name: string,
  shards: readonly Instance[],
  database: string,
  base: Omit<TopologyDoc, 'version' | 'shards' | 'name'>,
): string {
  const doc: TopologyDoc = {
    version: 1,
    name,
    shards: shards.map((s) => ({ name: s, host: '127.0.0.1', port: h.ports[s], database, user: 'root' })),
    ...base,
  };
  writeFileSync(path, `# Written by npm run bench for its own sandbox; do not edit.\n${stringify(doc)}`);
  return path;
}

/** Topologies for the shop fixture (tables, groups, scheme from fixtures/topologies/shop-2-hashmod.yaml). */
export function writeShopTopologies(
  h: Harness,
  workDir: string,
): { from: string; to: string; tables: string[] } {
  const fixture = parse(
    readFileSync(join(h.root, 'fixtures', 'topologies', 'shop-2-hashmod.yaml'), 'utf8'),
  ) as TopologyDoc;
  const base = {
    tables: fixture.tables,
    ...(fixture.groups ? { groups: fixture.groups } : {}),
    scheme: fixture.scheme,
  };
  return {
    from: writeTopology(h, join(workDir, 'shop-2.yaml'), 'bench-shop-2', SOURCES, 'shop', base),
    to: writeTopology(h, join(workDir, 'shop-3.yaml'), 'bench-shop-3', TARGETS, 'shop', base),
    tables: fixture.tables.map((t) => t.name),
  };
}

/** Seed the sources with the shop fixture and create its (empty) tables on the targets. */
export async function seedShop(env: BenchEnv): Promise<void> {
  const { shop } = env;
  const schemaSql = readSchemaFile(join(env.h.root, 'fixtures', 'shop', 'schema.sql'));
  log(`seeding the shop fixture: ${env.rowsPerSource} rows per source on s0, s1`);
  const res = await seed({
    topology: loadTopology(shop.from),
    rows: env.rowsPerSource * SOURCES.length,
    seed: env.seed,
    schemaSql,
    replace: true,
    onProgress: (e) => log(`  seeded ${e.table}: ${e.rows} rows`),
  });
  shop.rows = res.rows;
  log(
    `seeded ${res.rows} rows in ${res.seconds.toFixed(1)} s (${Object.entries(res.perShard)
      .map(([s, n]) => `${s} ${n}`)
      .join(', ')})`,
  );
  await seed({ topology: loadTopology(shop.to), rows: 0, seed: env.seed, schemaSql, replace: true });
}

/**
 * Fill the targets with exactly what a correct 2 → 3 copy produces, without reshard: the seeder
 * is deterministic per (seed, rows) and routes every row by the topology it is given, so seeding
 * the target topology yields the copy's result. Used when `reshard copy` is not available, so the
 * peer checksum queries still read both sides.
 */
export async function seedTargetsDirectly(env: BenchEnv): Promise<void> {
  log('filling the targets by seeding the target topology (reshard copy not available)');
  await seed({
    topology: loadTopology(env.shop.to),
    rows: env.rowsPerSource * SOURCES.length,
    seed: env.seed,
    schemaSql: readSchemaFile(join(env.h.root, 'fixtures', 'shop', 'schema.sql')),
    replace: true,
  });
  env.shop.targetsFilled = 'seed';
}

/** `reshard init` on the bench control schema, once per run. Returns a failure note, if any. */
export async function ensureInit(env: BenchEnv): Promise<string | undefined> {
  if (env.initialised) return undefined;
  const why = env.cli.unavailable('init', ['--control']);
  if (why) return why;
  const r = await env.cli.run(['init', '--control', env.controlDsn, '--json'], {
    memoryLabel: 'init',
    rows: 0,
  });
  if (r.code !== 0) return failureNote('reshard init', r);
  env.initialised = true;
  return undefined;
}

/**
 * Write the plan `from → to` at `out` with `reshard plan`, or — when that command does not exist
 * yet or fails — with the planner library; the returned note says so, for the report.
 */
export async function makePlan(
  env: BenchEnv,
  from: string,
  to: string,
  out: string,
  memoryLabel: string,
): Promise<string | undefined> {
  let why = env.cli.unavailable('plan', ['--from', '--to', '--out']);
  if (!why) {
    const args = ['plan', '--from', from, '--to', to, '--out', out];
    if (env.cli.command('plan').help.includes('--estimate')) args.push('--estimate', 'none');
    const r = await env.cli.run(args, { memoryLabel, rows: 0 });
    if (r.code === 0) return undefined;
    why = failureNote('reshard plan', r);
  }
  writePlanFile(out, planMove(loadTopology(from), loadTopology(to)));
  return `${why}: plan written with the planner library`;
}
