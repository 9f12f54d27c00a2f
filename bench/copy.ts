/**
 * Copy: the same rows moved to targets by reshard and by its peers, one tool at a time.
 *
 *   reshard    `reshard copy --execute`: the 2 → 3 plan, every row to its new owner (t0, t1, t2).
 *   mysqldump  `mysqldump --single-transaction shop | mariadb`, one pipe at a time (s0 → t0, then
 *              s1 → t1): multi-row INSERT over one connection, the baseline the copy issue's 1.6×
 *              target is set against.
 *   mysqldump-parallel  the same two pipes at once (two connections into two targets).
 *   myloader   mydumper (--trx-consistency-only, --rows chunks) then myloader (--enable-binlog),
 *              s0 → t0 and s1 → t1 in parallel; the time is dump + load together.
 *   load-data  the insert ceiling of a target: the same rows exported as TSV beforehand
 *              (SELECT … INTO OUTFILE, not timed) and loaded into t0 with LOAD DATA LOCAL INFILE
 *              over 2 connections (one per source).
 *
 * Every tool writes the binary log on the targets (reshard must: the reverse tailer reads it after
 * cutover), so myloader gets --enable-binlog. Peers copy whole source tables into their own
 * database on a target, dropped afterwards; each row counts once, so rows = rows moved.
 *
 * Rounds: the whole set runs RESHARD_BENCH_COPY_ROUNDS times (3 by default), tools interleaved
 * (reshard, mysqldump, mysqldump-parallel, myloader, load-data, then again), and each tool's
 * figure is its median run; the note lists every run. One run of each swung ±20% from run to run
 * on this 2-core machine (reshard 225k then 276k rows/s, myloader 268k then 247k, in two
 * back-to-back benches), more than the differences the targets are about. Between rounds
 * reshard's targets are emptied and its control schema made anew, so every round copies all rows.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  failureNote,
  INSTALL_HINT,
  type Instance,
  log,
  qi,
  quiet,
  type RunResult,
  SOURCES,
  sh,
  TARGETS,
} from './harness.js';
import { missing, type Row, row } from './report.js';
import { type BenchEnv, ensureInit, seedTargetsDirectly } from './sandbox.js';

const PEER_TARGETS: Record<(typeof SOURCES)[number], Instance> = { s0: 't0', s1: 't1' };

const ROUNDS = Math.max(1, Number(process.env.RESHARD_BENCH_COPY_ROUNDS ?? 3));
/** reshard's own database on each target (the commands' default --meta-db). */
const META_DB = '_reshard';

export async function benchCopy(env: BenchEnv, rows: Row[]): Promise<void> {
  const runs: Row[][] = [];
  const tsv = await exportTsv(env);
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      log(`copy: round ${round} of ${ROUNDS}`);
      if (round > 1) await resetReshard(env);
      await quiet('copy');
      runs.push(await reshardCopy(env, 'copy'));
      await quiet('copy');
      runs.push(await onceMoreOnDeadlock(() => mysqldumpCopy(env, 'serial')));
      await quiet('copy');
      runs.push(await onceMoreOnDeadlock(() => mysqldumpCopy(env, 'parallel')));
      await quiet('copy');
      runs.push(await onceMoreOnDeadlock(() => myloaderCopy(env)));
      await quiet('copy');
      runs.push(await loadDataCopy(env, tsv));
    }
  } finally {
    rmSync(tsv.dir, { recursive: true, force: true });
  }
  rows.push(...medians(runs));
}

/**
 * A peer's run again when it failed on an InnoDB deadlock, which the server reports as
 * transient ("try restarting transaction"): myloader's threads sometimes deadlock with each other
 * on one table (seen in 1 of 15 runs), and one such run used to leave the whole figure out.
 */
async function onceMoreOnDeadlock(run: () => Promise<Row[]>): Promise<Row[]> {
  const first = await run();
  const dead = first.find((x) => !Number.isFinite(x.value) && /Deadlock found/.test(x.note ?? ''));
  if (!dead) return first;
  log(`copy: ${dead.tool} hit a deadlock; running it once more`);
  return run();
}

/**
 * One rate per tool from its runs (each a rows_per_s row and a seconds row, or a missing row):
 * the median run, with every run's rows/s in the note. A tool that failed in any run is reported
 * missing, with that run's reason.
 */
function medians(runs: Row[][]): Row[] {
  const byTool = new Map<string, Row[][]>();
  for (const r of runs) {
    const tool = r[0]!.tool;
    byTool.set(tool, [...(byTool.get(tool) ?? []), r]);
  }
  const out: Row[] = [];
  for (const list of byTool.values()) {
    const failed = list.find((r) => r.some((x) => !Number.isFinite(x.value)));
    if (failed) {
      out.push(...failed);
      continue;
    }
    const rate = (r: Row[]) => r.find((x) => x.metric === 'rows_per_s')!;
    const sorted = [...list].sort((a, b) => rate(a).value - rate(b).value);
    const mid = sorted[Math.floor((sorted.length - 1) / 2)]!;
    const each = list.map((r) => `${Math.round(rate(r).value / 1000)}k`).join(', ');
    const note = [
      rate(mid).note,
      list.length > 1 ? `median of ${list.length} runs (rows/s: ${each})` : undefined,
    ]
      .filter(Boolean)
      .join('; ');
    out.push(...mid.map((x) => (x.metric === 'rows_per_s' ? { ...x, note } : x)));
  }
  return out;
}

/**
 * Empty reshard's targets and start its control schema afresh, so the next copy moves every row.
 * Its meta database on the targets (positions, parked rows, which job owns a job id) goes too:
 * the new control schema's job is job 1 again, and reshard refuses to take another job's rows
 * for its own (E_META_OTHER_JOB).
 */
async function resetReshard(env: BenchEnv): Promise<void> {
  const { h, shop } = env;
  for (const t of TARGETS) {
    for (const table of shop.tables) await h.query(t, `TRUNCATE TABLE ${qi(shop.database)}.${qi(table)}`);
    await h.query(t, `DROP DATABASE IF EXISTS ${qi(META_DB)}`);
  }
  const db = new URL(env.controlDsn).pathname.slice(1);
  await h.query('ctl', `DROP DATABASE IF EXISTS ${qi(db)}`);
  env.initialised = false;
  shop.targetsFilled = undefined;
}

function rate(tool: string, r: { seconds: number; rows: number }, note?: string): Row[] {
  return [
    row('copy', tool, 'rows_per_s', Math.round(r.rows / r.seconds), r.rows, note),
    row('copy', tool, 'seconds', r.seconds, r.rows),
  ];
}

/**
 * Run `reshard copy` on the shop job (also used by verify when copy was not benchmarked this run).
 * Returns the copy rows; fills the targets as a side effect, or seeds them directly when the
 * command is not available.
 */
export async function reshardCopy(env: BenchEnv, memoryLabel: string): Promise<Row[]> {
  const { shop, cli, h } = env;
  const why = cli.unavailable('copy', ['--plan', '--control', '--execute']) ?? (await ensureInit(env));
  if (why) {
    if (!shop.targetsFilled) await seedTargetsDirectly(env);
    return [missing('copy', 'reshard', 'rows_per_s', why)];
  }
  log('copy: reshard copy (2 → 3)');
  const args = ['copy', '--plan', shop.plan, '--control', env.controlDsn, '--execute'];
  if (cli.command('copy').help.includes('--json')) args.push('--json');
  const r = await cli.run(args, { memoryLabel, rows: shop.rows });
  const copied = await h.countRows(TARGETS, shop.database, shop.tables);
  shop.targetsFilled = 'reshard';
  if (r.code !== 0) return [missing('copy', 'reshard', 'rows_per_s', failureNote('reshard copy', r))];
  const notes = [
    copied !== shop.rows ? `targets hold ${copied} of ${shop.rows} rows` : undefined,
    shop.planNote,
  ].filter(Boolean);
  log(`copy: reshard copied ${copied} rows in ${r.seconds.toFixed(1)} s`);
  return rate('reshard', { seconds: r.seconds, rows: copied }, notes.join('; ') || undefined);
}

async function createDb(env: BenchEnv, insts: readonly Instance[], db: string): Promise<void> {
  for (const i of insts) {
    await env.h.query(i, `DROP DATABASE IF EXISTS ${qi(db)}`);
    await env.h.query(i, `CREATE DATABASE ${qi(db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  }
}

async function dropDb(env: BenchEnv, insts: readonly Instance[], db: string): Promise<void> {
  for (const i of insts) await env.h.query(i, `DROP DATABASE IF EXISTS ${qi(db)}`);
}

/** Run one async step per source in parallel; wall time of the whole, first failure wins. */
async function perSource(
  fn: (s: (typeof SOURCES)[number]) => Promise<RunResult | undefined>,
): Promise<{ seconds: number; failed?: RunResult }> {
  const t0 = process.hrtime.bigint();
  const results = await Promise.all(SOURCES.map(fn));
  const failed = results.find((r) => r && r.code !== 0);
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, ...(failed ? { failed } : {}) };
}

async function mysqldumpCopy(env: BenchEnv, mode: 'serial' | 'parallel'): Promise<Row[]> {
  const { h, peers, shop } = env;
  const tool = mode === 'serial' ? 'mysqldump' : 'mysqldump-parallel';
  if (!peers.mysqldump || !peers.mariadb)
    return [missing('copy', tool, 'rows_per_s', `mysqldump or mariadb client not found; ${INSTALL_HINT}`)];
  const db = `peer_${tool.replace('-', '_')}`;
  const targets = SOURCES.map((s) => PEER_TARGETS[s]);
  await createDb(env, targets, db);
  log(
    `copy: mysqldump | mariadb (s0 → t0, s1 → t1; ${mode === 'serial' ? 'one pipe at a time' : 'both pipes at once'})`,
  );
  const pipe = (s: (typeof SOURCES)[number]) => {
    const dump = [peers.mysqldump!, ...h.mysqlClientArgs(s), '--single-transaction', shop.database];
    const load = [peers.mariadb!, ...h.mysqlClientArgs(PEER_TARGETS[s]), db];
    return h.shell(`${dump.map(sh).join(' ')} | ${load.map(sh).join(' ')}`, { label: `${tool} ${s}` });
  };
  const res = mode === 'parallel' ? await perSource(pipe) : await oneAfterAnother(pipe);
  const moved = await h.countRows(targets, db, shop.tables);
  await dropDb(env, targets, db);
  if (res.failed)
    return [missing('copy', tool, 'rows_per_s', failureNote('mysqldump | mariadb', res.failed))];
  log(`copy: ${tool} moved ${moved} rows in ${res.seconds.toFixed(1)} s`);
  return rate(
    tool,
    { seconds: res.seconds, rows: moved },
    mode === 'serial'
      ? 'mysqldump | mariadb, one pipe (one connection) at a time'
      : 'mysqldump | mariadb, one pipe per source at once',
  );
}

/** Run one step per source, one after another; wall time of the whole, first failure stops. */
async function oneAfterAnother(
  fn: (s: (typeof SOURCES)[number]) => Promise<RunResult | undefined>,
): Promise<{ seconds: number; failed?: RunResult }> {
  const t0 = process.hrtime.bigint();
  for (const s of SOURCES) {
    const r = await fn(s);
    if (r && r.code !== 0) return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, failed: r };
  }
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

async function myloaderCopy(env: BenchEnv): Promise<Row[]> {
  const { h, peers, shop } = env;
  if (!peers.mydumper || !peers.myloader)
    return [missing('copy', 'myloader', 'rows_per_s', `mydumper/myloader not found; ${INSTALL_HINT}`)];
  const db = 'peer_myloader';
  const targets = SOURCES.map((s) => PEER_TARGETS[s]);
  await dropDb(env, targets, db);
  const chunkRows = String(Math.max(10_000, Math.min(500_000, Math.round(env.rowsPerSource / 10))));
  const dumpSeconds: number[] = [];
  log(`copy: mydumper + myloader (s0 → t0, s1 → t1; --rows ${chunkRows})`);
  const res = await perSource(async (s) => {
    const dir = join(env.workDir, `mydumper-${s}`);
    rmSync(dir, { recursive: true, force: true });
    const dump = await h.run(
      peers.mydumper!,
      [
        ...glibArgs(env, s),
        '--database',
        shop.database,
        '--outputdir',
        dir,
        '--trx-consistency-only',
        '--rows',
        chunkRows,
      ],
      { label: `mydumper ${s}` },
    );
    dumpSeconds.push(dump.seconds);
    if (dump.code !== 0) return dump;
    return h.run(
      peers.myloader!,
      [
        ...glibArgs(env, PEER_TARGETS[s]),
        '--directory',
        dir,
        '--database',
        db,
        '--enable-binlog',
        '--overwrite-tables',
      ],
      { label: `myloader ${s}` },
    );
  });
  const moved = await h.countRows(targets, db, shop.tables);
  await dropDb(env, targets, db);
  for (const s of SOURCES) rmSync(join(env.workDir, `mydumper-${s}`), { recursive: true, force: true });
  if (res.failed)
    return [missing('copy', 'myloader', 'rows_per_s', failureNote('mydumper/myloader', res.failed))];
  const dumpMax = Math.max(...dumpSeconds);
  log(
    `copy: mydumper + myloader moved ${moved} rows in ${res.seconds.toFixed(1)} s (dump ${dumpMax.toFixed(1)} s)`,
  );
  return rate(
    'myloader',
    { seconds: res.seconds, rows: moved },
    `mydumper + myloader, dump ${dumpMax.toFixed(1)} s of it; 4 threads each`,
  );
}

/** mydumper/myloader parse options with glib: `--port 1234`, not `-P1234`. */
function glibArgs(env: BenchEnv, inst: Instance): string[] {
  return ['--host', '127.0.0.1', '--port', String(env.h.ports[inst]), '--user', 'root'];
}

/**
 * SELECT list for INTO OUTFILE and column list for LOAD DATA. BIT goes through an integer:
 * OUTFILE writes BIT values as raw unescaped bytes, which can contain tabs and newlines.
 */
async function tsvColumns(env: BenchEnv, table: string): Promise<{ select: string; load: string }> {
  const cols = await env.h.query(
    's0',
    'SELECT COLUMN_NAME AS c, DATA_TYPE AS t FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    [env.shop.database, table],
  );
  const names = cols.map((r) => qi(String(r.c)));
  const bit = cols.map((r) => String(r.t).toLowerCase() === 'bit');
  const select = names.map((n, i) => (bit[i] ? `CAST(${n} AS UNSIGNED)` : n)).join(', ');
  const vars = names.map((n, i) => (bit[i] ? `@v${i}` : n)).join(', ');
  const sets = names.flatMap((n, i) => (bit[i] ? [`${n} = CAST(@v${i} AS UNSIGNED)`] : []));
  return { select, load: `(${vars})${sets.length ? ` SET ${sets.join(', ')}` : ''}` };
}

interface TsvExport {
  dir: string;
  /** Per source, the LOAD DATA statements of its files. */
  files: Map<string, string[]>;
}

/** The rows as TSV files for the load-data ceiling, once for every round (not timed). */
async function exportTsv(env: BenchEnv): Promise<TsvExport> {
  const { h, shop } = env;
  const dir = join(env.workDir, 'tsv');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o777 });
  log('copy: exporting the rows as TSV (SELECT … INTO OUTFILE; not timed)');
  const files = new Map<string, string[]>();
  for (const s of SOURCES) {
    const list: string[] = [];
    for (const t of shop.tables) {
      const f = join(dir, `${s}.${t}.tsv`);
      const cols = await tsvColumns(env, t);
      await h.query(s, `SELECT ${cols.select} INTO OUTFILE ? FROM ${qi(shop.database)}.${qi(t)}`, [f]);
      list.push(
        `LOAD DATA LOCAL INFILE '${f.replace(/'/g, "''")}' INTO TABLE ${qi(t)} CHARACTER SET utf8mb4 ${cols.load};`,
      );
    }
    files.set(s, list);
  }
  return { dir, files };
}

async function loadDataCopy(env: BenchEnv, tsv: TsvExport): Promise<Row[]> {
  const { h, peers, shop } = env;
  if (!peers.mariadb)
    return [missing('copy', 'load-data', 'rows_per_s', `mariadb client not found; ${INSTALL_HINT}`)];
  const db = 'peer_loaddata';
  const files = tsv.files;
  await createDb(env, ['t0'], db);
  const schema = readFileSync(join(h.root, 'fixtures', 'shop', 'schema.sql'), 'utf8');
  const created = await h.run(peers.mariadb, [...h.mysqlClientArgs('t0'), db, '-e', schema], {
    label: 'schema',
  });
  if (created.code !== 0) return [missing('copy', 'load-data', 'rows_per_s', failureNote('schema', created))];
  log('copy: LOAD DATA LOCAL INFILE into t0 over 2 connections');
  const res = await perSource((s) =>
    h.run(
      peers.mariadb!,
      [...h.mysqlClientArgs('t0'), '--local-infile=1', db, '-e', files.get(s)!.join('\n')],
      {
        label: `load data ${s}`,
      },
    ),
  );
  const moved = await h.countRows(['t0'], db, shop.tables);
  await dropDb(env, ['t0'], db);
  if (res.failed) return [missing('copy', 'load-data', 'rows_per_s', failureNote('LOAD DATA', res.failed))];
  log(`copy: LOAD DATA loaded ${moved} rows in ${res.seconds.toFixed(1)} s`);
  return rate(
    'load-data',
    { seconds: res.seconds, rows: moved },
    'ceiling: TSV into one target, 2 connections',
  );
}
