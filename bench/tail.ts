/**
 * Tail: catch-up apply rate on a recorded `sysbench oltp_write_only` binlog.
 *
 *   1. sysbench prepares sbtest1..4 on each source; each source then keeps only the ids it owns
 *      under hash-mod crc32 (deleted with sql_log_bin = 0), and a BEFORE INSERT trigger refuses
 *      ids it does not own (sysbench runs with --mysql-ignore-errors=1644), so the stock workload
 *      keeps the estate correctly sharded: every row change in the binlog belongs to its source.
 *   2. `reshard copy` copies sbtest 2 → 3 (recording the start positions), and the replica r0 is
 *      loaded with both sources' rows (mysqldump, not timed); the sources' positions are recorded.
 *   3. sysbench oltp_write_only runs on both sources at once; rows changed = row events in the
 *      binlog it wrote (decoded with mariadb-binlog). sysbench rows/s = that / its run time.
 *   4. `reshard tail --until-caught-up` starts behind the whole recorded binlog and applies it as
 *      fast as it can: rows/s = rows changed / its run time (process start to exit).
 *   5. MariaDB's replication applies the same binlog: r0 gets CHANGE MASTER 's0'/'s1' TO the
 *      recorded positions (multi-source, default single SQL thread per source), START ALL SLAVES,
 *      time until both connections executed up to the sources' end positions.
 *   6. Live lag: `reshard tail` runs live (until SIGTERM) while sysbench runs again on both
 *      sources, throttled (`--rate`) to half the transactions/s each reached in step 3. Every
 *      100 ms the bench inserts a row with a fresh id, owned by the source, into a probe table
 *      of the job on each source, and polls the row's new owner every 15 ms: lag = time from
 *      the INSERT's commit acknowledgement to the first poll that sees the row (an upper bound
 *      on the true lag by at most one poll interval plus a query). The first WARM_S seconds of
 *      load are not counted (the tailer is a fresh process; their worst lag is in the note).
 *      Measured end to end, not by reshard's own estimate; that one (reshard_tail_status) goes
 *      in the note too, with the load average and CPU pressure of the measured window.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { createRouter, type Router } from '../src/plan/router.js';
import { loadTopology } from '../src/topology/load.js';
import {
  failureNote,
  INSTALL_HINT,
  type Instance,
  lastJson,
  log,
  qi,
  quiet,
  SOURCES,
  sh,
  sleep,
  TARGETS,
} from './harness.js';
import { missing, type Row, row } from './report.js';
import { type BenchEnv, ensureInit, makePlan, writeTopology } from './sandbox.js';

const DB = 'sbtest';
const TABLES = ['sbtest1', 'sbtest2', 'sbtest3', 'sbtest4'];
/** The live phase's probe rows: a table of the job (so the tailer applies it), empty until then. */
const PROBE = 'reshard_lag_probe';
const PROBE_EVERY_MS = 100;
const POLL_EVERY_MS = 15;
/** Seconds of throttled load before the lag is measured (the live tailer is a fresh process). */
const WARM_S = 5;
const THREADS = 4;
/**
 * Errors sysbench skips (restarting the transaction): 1644 is the ownership trigger's SIGNAL;
 * deadlocks and lock wait timeouts are normal for oltp_write_only on small tables.
 */
const IGNORE_ERRNOS = '1644,1213,1205';

interface Position {
  file: string;
  pos: number;
}

export async function benchTail(env: BenchEnv, rows: Row[]): Promise<void> {
  const { peers, cli, h } = env;
  if (!peers.sysbench) {
    const note = `sysbench not found; ${INSTALL_HINT}`;
    rows.push(...['sysbench', 'reshard', 'replica'].map((t) => missing('tail', t, 'rows_per_s', note)));
    return;
  }
  const tableSize = Math.max(1000, Math.round(env.rowsPerSource / 8));
  const seconds = Math.round(Math.min(60, Math.max(10, env.rowsPerSource / 20_000)));
  await prepareSources(env, tableSize);
  await createTables([...TARGETS, 'r0'], env);

  const reshardWhy =
    cli.unavailable('copy', ['--plan', '--execute']) ??
    cli.unavailable('tail', ['--plan', '--until-caught-up']) ??
    (await ensureInit(env));
  const from = writeTopology(
    h,
    join(env.workDir, 'sbtest-2.yaml'),
    'bench-sbtest-2',
    SOURCES,
    DB,
    topologyBase(),
  );
  const to = writeTopology(
    h,
    join(env.workDir, 'sbtest-3.yaml'),
    'bench-sbtest-3',
    TARGETS,
    DB,
    topologyBase(),
  );
  const plan = join(env.workDir, 'sbtest-plan.json');
  let reshardNote = reshardWhy;
  let planNote: string | undefined;
  if (!reshardWhy) {
    planNote = await makePlan(env, from, to, plan, 'plan (sbtest)');
    const sourceRows = await h.countRows(SOURCES, DB, TABLES);
    log(`tail: reshard copy of sbtest (${sourceRows} rows; records the start positions; not timed)`);
    const args = ['copy', '--plan', plan, '--control', env.controlDsn, '--execute'];
    if (cli.command('copy').help.includes('--json')) args.push('--json');
    const c = await cli.run(args, { memoryLabel: 'copy (sbtest)', rows: sourceRows });
    if (c.code !== 0) reshardNote = failureNote('reshard copy (sbtest)', c);
  }

  const replicaNote = await loadReplica(env);
  const start = await positions(env);
  log(`tail: sysbench oltp_write_only on s0 and s1, ${THREADS} threads each, ${seconds} s`);
  const t0 = process.hrtime.bigint();
  const runs = await Promise.all(
    SOURCES.map((s) =>
      h.run(peers.sysbench!, [...sysbenchArgs(env, s, tableSize), `--time=${seconds}`, 'run'], {
        label: `sysbench ${s}`,
      }),
    ),
  );
  const sbSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const failed = runs.find((r) => r.code !== 0);
  if (failed) {
    const note = failureNote('sysbench run', failed);
    rows.push(...['sysbench', 'reshard', 'replica'].map((t) => missing('tail', t, 'rows_per_s', note)));
    return;
  }
  const end = await positions(env);
  const counted = await binlogRows(env, start, end);
  if (typeof counted === 'string') {
    rows.push(...['sysbench', 'reshard', 'replica'].map((t) => missing('tail', t, 'rows_per_s', counted)));
    return;
  }
  const changed = counted;
  const tpsPerSource = runs.map(sysbenchTps);
  const tps = tpsPerSource.reduce((a, b) => a + b, 0);
  log(
    `tail: sysbench changed ${changed} rows in ${sbSeconds.toFixed(1)} s (${Math.round(changed / sbSeconds)} rows/s)`,
  );
  rows.push(
    row(
      'tail',
      'sysbench',
      'rows_per_s',
      Math.round(changed / sbSeconds),
      changed,
      `write rate on the sources: ${THREADS} threads × 2 sources, ${Math.round(tps)} trx/s`,
    ),
  );

  let liveNote = reshardNote;
  if (reshardNote) rows.push(missing('tail', 'reshard', 'rows_per_s', reshardNote));
  else {
    await quiet('tail');
    log('tail: reshard tail --until-caught-up over the recorded binlog');
    const args = ['tail', '--plan', plan, '--control', env.controlDsn, '--until-caught-up'];
    if (cli.command('tail').help.includes('--json')) args.push('--json');
    // Catching up must not take much longer than writing did; a tailer that never gets there is a result too.
    const r = await cli.run(args, {
      memoryLabel: 'tail',
      rows: changed,
      timeoutMs: Math.max(300, seconds * 30) * 1000,
    });
    if (r.code !== 0) {
      liveNote = failureNote('reshard tail (catch-up)', r);
      rows.push(missing('tail', 'reshard', 'rows_per_s', liveNote));
    } else {
      const [src, dst] = await Promise.all([
        h.countRows(SOURCES, DB, TABLES),
        h.countRows(TARGETS, DB, TABLES),
      ]);
      const decoded = (lastJson(r.stdout)?.sources as { rows?: number }[] | undefined)?.reduce(
        (a, x) => a + (typeof x.rows === 'number' ? x.rows : 0),
        0,
      );
      const note = [
        'catch-up: started behind the whole recorded binlog',
        planNote,
        decoded !== undefined && decoded !== changed ? `the tailer reports ${decoded} rows read` : undefined,
        src === dst ? undefined : `targets hold ${dst} rows, sources ${src}`,
      ]
        .filter(Boolean)
        .join('; ');
      log(`tail: reshard caught up in ${r.seconds.toFixed(1)} s`);
      rows.push(row('tail', 'reshard', 'rows_per_s', Math.round(changed / r.seconds), changed, note));
      rows.push(row('tail', 'reshard', 'seconds', r.seconds, changed));
    }
  }

  if (replicaNote) rows.push(missing('tail', 'replica', 'rows_per_s', replicaNote));
  else {
    await quiet('tail');
    log('tail: MariaDB replication (r0, multi-source) over the same binlog');
    const r = await replicate(env, start, end, Math.max(120, seconds * 20));
    if ('error' in r) rows.push(missing('tail', 'replica', 'rows_per_s', r.error));
    else {
      const [src, dst] = await Promise.all([
        h.countRows(SOURCES, DB, TABLES),
        h.countRows(['r0'], DB, TABLES),
      ]);
      const note = `one SQL thread per source (defaults)${src === dst ? '' : `; replica holds ${dst} rows, sources ${src}`}`;
      log(`tail: replica caught up in ${r.seconds.toFixed(1)} s`);
      rows.push(
        row('tail', 'replica', 'rows_per_s', Math.round(changed / r.seconds), changed, note),
        row('tail', 'replica', 'seconds', r.seconds, changed),
      );
    }
  }

  const liveMetrics = ['live_lag_p50_s', 'live_lag_p99_s', 'live_lag_max_s'];
  if (liveNote) rows.push(...liveMetrics.map((m) => missing('tail', 'reshard', m, liveNote!)));
  else if (tpsPerSource.some((x) => !(x > 0))) {
    const note = 'sysbench reported no transactions/s to halve';
    rows.push(...liveMetrics.map((m) => missing('tail', 'reshard', m, note)));
  } else {
    const liveSeconds = Math.round(Math.min(60, Math.max(20, env.rowsPerSource / 20_000)));
    const rates = tpsPerSource.map((x) => Math.max(1, Math.round(x / 2)));
    const r = await liveLag(env, { plan, from, to, tableSize, seconds: liveSeconds, rates });
    if ('error' in r) rows.push(...liveMetrics.map((m) => missing('tail', 'reshard', m, r.error)));
    else {
      const q = (f: number) => quantile(r.lags, f);
      const n = r.lags.length;
      const note = [
        `${n} probe rows (one per ${PROBE_EVERY_MS} ms per source, polled every ${POLL_EVERY_MS} ms on the new owner) during ${liveSeconds} s of sysbench, after a ${WARM_S} s warm-up, at --rate ${rates.join('+')} trx/s (half of ${Math.round(tps)}; reached ${Math.round(r.tps)} trx/s, ${Math.round(r.rowsPerSecond)} rows/s)`,
        r.lost
          ? `${r.lost} probe rows had not arrived when the bench stopped waiting (counted with the time waited)`
          : undefined,
        `max lag in the first ${WARM_S} s of load, not counted: ${r.warmMaxS.toFixed(2)} s`,
        r.tailerLag.length
          ? `reshard's own lag estimate (reshard_tail_status, every 0.5 s): p99 ${quantile(r.tailerLag, 0.99).toFixed(2)} s, max ${quantile(r.tailerLag, 1).toFixed(2)} s`
          : undefined,
        `1-min load average ${r.loadavg} (start → end of the measured load; ${cpus().length} CPUs)${Number.isFinite(r.cpuStalled) ? `, some task waiting for a CPU ${(100 * r.cpuStalled).toFixed(0)} % of the time (/proc/pressure/cpu)` : ''}`,
        r.cores ? `CPU used in that window, in cores: ${r.cores}` : undefined,
        r.tailerNote,
      ]
        .filter(Boolean)
        .join('; ');
      log(
        `tail: live lag over ${n} probes: p50 ${q(0.5).toFixed(3)} s, p99 ${q(0.99).toFixed(3)} s, max ${q(1).toFixed(3)} s`,
      );
      rows.push(
        row('tail', 'reshard', 'live_lag_p50_s', q(0.5), n),
        row('tail', 'reshard', 'live_lag_p99_s', q(0.99), n, note),
        row('tail', 'reshard', 'live_lag_max_s', q(1), n),
      );
    }
  }
}

/**
 * Linux pressure stall information: total µs in which at least one runnable task waited for a
 * CPU. Its growth over a window says how contended the machine was (load average lags and
 * counts I/O waits too). Undefined where /proc/pressure is absent.
 */
function cpuPressure(): { us: number; at: number } | undefined {
  try {
    const m = /^some .*total=(\d+)/m.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? { us: Number(m[1]), at: Date.now() } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time (seconds, user + system) used so far by each group of processes that share the
 * machine during the live phase: the sandbox servers by role, the live tailer, sysbench, this
 * bench (its probes and pollers) and everything else, from /proc (Linux only; undefined
 * elsewhere). Two snapshots give who took the cores in the measured window — on the 2-core
 * bench machine the lag is set by how much CPU each pipeline stage gets, not by the tailer alone.
 */
function cpuByGroup(ports: Record<Instance, number>, plan: string): Map<string, number> | undefined {
  const HZ = 100; // USER_HZ, the unit of /proc/<pid>/stat times, on every Linux the bench runs on
  try {
    const out = new Map<string, number>();
    const roleOfPort = new Map<number, string>();
    for (const [name, port] of Object.entries(ports))
      roleOfPort.set(
        port,
        (SOURCES as readonly string[]).includes(name)
          ? 'sources'
          : (TARGETS as readonly string[]).includes(name)
            ? 'targets'
            : name === 'ctl'
              ? 'control'
              : 'replica',
      );
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      let stat: string;
      let cmd: string;
      try {
        stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        continue; // exited meanwhile
      }
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]);
      if (!(ticks > 0)) continue;
      const port = /--port=(\d+)/.exec(cmd);
      const group =
        port && cmd.includes('mariadbd')
          ? (roleOfPort.get(Number(port[1])) ?? 'other')
          : cmd.includes(' tail ') && cmd.includes(plan)
            ? 'reshard tail'
            : cmd.includes('sysbench')
              ? 'sysbench'
              : Number(d) === process.pid
                ? 'bench probes'
                : 'other';
      out.set(group, (out.get(group) ?? 0) + ticks / HZ);
    }
    return out;
  } catch {
    return undefined;
  }
}

/** "sources 1.31, targets 0.18, …" cores (CPU seconds per second) between two snapshots. */
function coresUsed(
  a: Map<string, number> | undefined,
  b: Map<string, number> | undefined,
  seconds: number,
): string | undefined {
  if (!a || !b || !(seconds > 0)) return undefined;
  const order = [
    'sources',
    'targets',
    'control',
    'replica',
    'reshard tail',
    'sysbench',
    'bench probes',
    'other',
  ];
  return order
    .map((g) => [g, ((b.get(g) ?? 0) - (a.get(g) ?? 0)) / seconds] as const)
    .filter(([, c]) => c >= 0.005)
    .map(([g, c]) => `${g} ${c.toFixed(2)}`)
    .join(', ');
}

/** Transactions/s from sysbench's summary (0 when absent). */
function sysbenchTps(r: { stdout: string }): number {
  return Number(/transactions:\s+\d+\s+\(([\d.]+) per sec/.exec(r.stdout)?.[1] ?? 0);
}

/** The value below which a fraction `f` of `xs` lies (nearest rank; f = 1 is the maximum). */
function quantile(xs: readonly number[], f: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(f * sorted.length) - 1))]!;
}

interface LiveResult {
  /** End-to-end lag of each probe row sent while the load ran, seconds. */
  lags: number[];
  /** Probe rows not seen on their new owner by the end of the wait (in lags with the time waited). */
  lost: number;
  /** Largest lag of the probes sent during the warm-up (not counted). */
  warmMaxS: number;
  /** reshard_tail_status.lag_seconds samples of both sources. */
  tailerLag: number[];
  tps: number;
  rowsPerSecond: number;
  loadavg: string;
  /** Share of the measured window in which some runnable task waited for a CPU (PSI), or NaN. */
  cpuStalled: number;
  /** CPU used per group of processes in the measured window, in cores ("sources 1.31, …"). */
  cores?: string;
  tailerNote?: string;
}

/**
 * idle: the tailer starts, no load; warm: the first WARM_S s of the load (a fresh tailer process
 * compiles its hot paths, reported apart); load: measured; drain: after the load.
 */
type Phase = 'idle' | 'warm' | 'load' | 'drain';

interface Probe {
  id: number;
  target: Instance;
  /** performance.now() when the INSERT's commit was acknowledged. */
  committedAt: number;
  /** When it was sent: only probes of the 'load' phase count. */
  phase: Phase;
  seenAt?: number;
}

/**
 * Step 6: `reshard tail` live on the job while sysbench runs at `rates` (trx/s per source);
 * probe rows measure the lag from commit on a source to visibility on the new owner.
 */
async function liveLag(
  env: BenchEnv,
  o: { plan: string; from: string; to: string; tableSize: number; seconds: number; rates: number[] },
): Promise<LiveResult | { error: string }> {
  const { h, cli, peers } = env;
  const fromRouter = createRouter(loadTopology(o.from));
  const toRouter = createRouter(loadTopology(o.to));
  const controlDb = decodeURIComponent(new URL(env.controlDsn).pathname.slice(1));
  const stopTail = new AbortController();
  await quiet('tail');
  log('tail: reshard tail live (until stopped) for the lag measurement');
  const args = ['tail', '--plan', o.plan, '--control', env.controlDsn];
  if (cli.command('tail').help.includes('--json')) args.push('--json');
  let tailExited = false;
  const tailRun = cli
    .run(args, { memoryLabel: 'tail (live)', rows: 0, signal: stopTail.signal })
    .finally(() => {
      tailExited = true;
    });
  const conns: Partial<Record<Instance, Connection>> = {};
  const probes: Probe[] = [];
  const tailerLag: number[] = [];
  let stopProbing = false;
  const live = { phase: 'idle' as Phase };
  let stopped = false;
  const loops: Promise<void>[] = [];
  try {
    for (const i of [...SOURCES, ...TARGETS, 'ctl'] as const)
      conns[i] = await h.connect(i, i === 'ctl' ? undefined : DB);
    const nextId = idsOwnedBy(fromRouter);
    // One sender per source: a probe row every PROBE_EVERY_MS, each its own transaction.
    for (const s of SOURCES) {
      loops.push(
        (async () => {
          while (!stopProbing) {
            const t0 = performance.now();
            const id = nextId(s);
            await conns[s]!.query(`INSERT INTO ${qi(PROBE)} (id, sent_at) VALUES (?, NOW(6))`, [id]);
            probes.push({
              id,
              target: toRouter.ownerOf(id) as Instance,
              committedAt: performance.now(),
              phase: live.phase,
            });
            await sleep(Math.max(0, PROBE_EVERY_MS - (performance.now() - t0)));
          }
        })(),
      );
    }
    // One poller per target: which of the probe rows it owns are there yet.
    for (const t of TARGETS) {
      loops.push(
        (async () => {
          while (!stopped) {
            const t0 = performance.now();
            const waiting = probes.filter((p) => p.target === t && p.seenAt === undefined);
            if (waiting.length) {
              const [found] = await conns[t]!.query<RowDataPacket[]>(
                `SELECT id FROM ${qi(PROBE)} WHERE id IN (?)`,
                [waiting.map((p) => p.id)],
              );
              const now = performance.now();
              const ids = new Set(found.map((r) => Number(r.id)));
              for (const p of waiting) if (ids.has(p.id)) p.seenAt = now;
            }
            await sleep(Math.max(0, POLL_EVERY_MS - (performance.now() - t0)));
          }
        })(),
      );
    }
    // The tailer's own lag estimate, as it mirrors it into the control schema.
    loops.push(
      (async () => {
        while (!stopped) {
          if (live.phase === 'load') {
            const [st] = await conns.ctl!.query<RowDataPacket[]>(
              `SELECT lag_seconds FROM ${qi(controlDb)}.reshard_tail_status
                WHERE direction = 'forward' AND state = 'running' AND updated_at > NOW(6) - INTERVAL 3 SECOND`,
            );
            for (const r of st) tailerLag.push(Number(r.lag_seconds));
          }
          await sleep(500);
        }
      })(),
    );
    // Rejects when a probe loop fails (observed wherever the bench waits); never resolves.
    const failedLoop = Promise.race(loops.map((l) => l.then(() => new Promise<never>(() => undefined))));
    failedLoop.catch(() => undefined);

    // Warm-up: the tailer is streaming once a probe row of each source has arrived.
    const warm = Date.now() + 120_000;
    const allSeen = () =>
      SOURCES.every((s) => probes.some((p) => fromRouter.ownerOf(p.id) === s && p.seenAt));
    while (!allSeen()) {
      if (tailExited) return { error: failureNote('reshard tail (live)', await tailRun) };
      if (Date.now() > warm) return { error: 'reshard tail (live): no probe row arrived within 120 s' };
      await Promise.race([sleep(50), failedLoop]);
    }
    // Then until it has finished starting: the probes of the last second all arrived, each
    // within 0.2 s. The first probes arrive while the fresh process is still connecting and
    // compiling its hot paths (seen: 3.7 s for the first); starting the load then put that
    // backlog into the warm-up, which is there for the load's own start.
    const settled = Date.now() + 30_000;
    const caughtUp = () => {
      const now = performance.now();
      const recent = probes.filter((p) => p.committedAt > now - 1000 && p.committedAt < now - 300);
      return (
        recent.length >= 4 && recent.every((p) => p.seenAt !== undefined && p.seenAt - p.committedAt < 200)
      );
    };
    while (!caughtUp() && Date.now() < settled) {
      if (tailExited) return { error: failureNote('reshard tail (live)', await tailRun) };
      await Promise.race([sleep(50), failedLoop]);
    }
    log(
      `tail: sysbench oltp_write_only at --rate ${o.rates.join(', ')} trx/s on s0, s1 for ${WARM_S} + ${o.seconds} s, probing lag after the first ${WARM_S} s`,
    );
    live.phase = 'warm';
    let start: Record<string, Position> | undefined;
    let loadAtStart = Number.NaN;
    let pressureAtStart: { us: number; at: number } | undefined;
    let cpuAtStart: { groups: Map<string, number> | undefined; at: number } | undefined;
    let cpuAtEnd: typeof cpuAtStart;
    let t0 = process.hrtime.bigint();
    const counted = (async () => {
      await sleep(WARM_S * 1000);
      if (live.phase !== 'warm') return;
      start = await positions(env);
      loadAtStart = loadavg()[0]!;
      pressureAtStart = cpuPressure();
      cpuAtStart = { groups: cpuByGroup(h.ports, o.plan), at: Date.now() };
      t0 = process.hrtime.bigint();
      live.phase = 'load';
      // The second snapshot half a second before sysbench ends: an exited process's CPU time is
      // gone from /proc, so sysbench would not be counted after it.
      setTimeout(
        () => {
          if (live.phase === 'load') cpuAtEnd = { groups: cpuByGroup(h.ports, o.plan), at: Date.now() };
        },
        Math.max(0, o.seconds * 1000 - 500),
      ).unref();
    })();
    const runs = await Promise.race([
      Promise.all(
        SOURCES.map((s, i) =>
          h.run(
            peers.sysbench!,
            [
              ...sysbenchArgs(env, s, o.tableSize),
              `--rate=${o.rates[i]}`,
              `--time=${WARM_S + o.seconds}`,
              'run',
            ],
            { label: `sysbench --rate ${s}` },
          ),
        ),
      ),
      failedLoop,
    ]);
    const sbSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const ended: Phase = live.phase as Phase;
    live.phase = 'drain';
    await counted;
    const failed = runs.find((r) => r.code !== 0);
    if (failed) return { error: failureNote('sysbench run (throttled)', failed) };
    if (ended !== 'load' || !start) return { error: 'sysbench ended before the warm-up was over' };
    const load = `${loadAtStart.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`;
    const pressureAtEnd = cpuPressure();
    const cores =
      cpuAtStart && cpuAtEnd
        ? coresUsed(cpuAtStart.groups, cpuAtEnd.groups, (cpuAtEnd.at - cpuAtStart.at) / 1000)
        : undefined;
    const stalled =
      pressureAtStart && pressureAtEnd
        ? (pressureAtEnd.us - pressureAtStart.us) / 1000 / (pressureAtEnd.at - pressureAtStart.at)
        : Number.NaN;
    stopProbing = true;
    // Drain: every counted probe arrives, or the wait ends (a lag that large is a result too).
    const waitS = 30;
    const drain = Date.now() + waitS * 1000;
    const inPhase = (ph: Phase) => probes.filter((p) => p.phase === ph);
    while (
      [...inPhase('warm'), ...inPhase('load')].some((p) => p.seenAt === undefined) &&
      Date.now() < drain &&
      !tailExited
    )
      await Promise.race([sleep(50), failedLoop]);
    const end = await positions(env);
    const lost = inPhase('load').filter((p) => p.seenAt === undefined);
    const now = performance.now();
    const lagOf = (p: Probe) => ((p.seenAt ?? now) - p.committedAt) / 1000;
    const lags = inPhase('load').map(lagOf);
    // RESHARD_BENCH_LAG_TRACE=FILE: every probe as a JSON line (sent at, seconds from the first;
    // source owner, target, lag), to see when the slow ones happened, not only how many.
    const trace = process.env.RESHARD_BENCH_LAG_TRACE;
    if (trace) {
      const t0 = probes[0]?.committedAt ?? 0;
      writeFileSync(
        trace,
        probes
          .map((p) =>
            JSON.stringify({
              at: +((p.committedAt - t0) / 1000).toFixed(3),
              phase: p.phase,
              source: fromRouter.ownerOf(p.id),
              target: p.target,
              lag: +lagOf(p).toFixed(3),
            }),
          )
          .join('\n'),
      );
    }
    const warmLags = inPhase('warm').map(lagOf);
    const binRows = await binlogRows(env, start, end);
    const probeRows = inPhase('load').length;
    stopped = true;
    await Promise.all(loops);
    stopTail.abort();
    const t = await tailRun;
    const tailerNote =
      t.code === 0 ? undefined : `the live tailer ended with ${failureNote('reshard tail', t)}`;
    return {
      lags,
      lost: lost.length,
      warmMaxS: warmLags.length ? Math.max(...warmLags) : Number.NaN,
      tailerLag,
      tps: runs.map(sysbenchTps).reduce((a, b) => a + b, 0),
      rowsPerSecond: typeof binRows === 'number' ? Math.max(0, binRows - probeRows) / sbSeconds : Number.NaN,
      loadavg: load,
      cpuStalled: stalled,
      ...(cores ? { cores } : {}),
      ...(tailerNote ? { tailerNote } : {}),
    };
  } finally {
    stopProbing = true;
    stopped = true;
    await Promise.allSettled(loops);
    stopTail.abort();
    await tailRun.catch(() => undefined);
    for (const c of Object.values(conns)) await c?.end().catch(() => undefined);
  }
}

/** Fresh ids (counting up from 1) owned by each source under the source topology. */
function idsOwnedBy(router: Router): (source: string) => number {
  const next = new Map<string, number>();
  return (source) => {
    let id = next.get(source) ?? 1;
    while (router.ownerOf(id) !== source) id++;
    next.set(source, id + 1);
    return id;
  };
}

function topologyBase() {
  return {
    tables: [...TABLES, PROBE].map((name) => ({ name, shardKey: 'id' })),
    scheme: { type: 'hash-mod', hash: 'crc32' },
  };
}

function sysbenchArgs(env: BenchEnv, s: Instance, tableSize: number): string[] {
  return [
    'oltp_write_only',
    '--db-driver=mysql',
    '--mysql-host=127.0.0.1',
    `--mysql-port=${env.h.ports[s]}`,
    '--mysql-user=root',
    `--mysql-db=${DB}`,
    `--tables=${TABLES.length}`,
    `--table-size=${tableSize}`,
    `--threads=${THREADS}`,
    `--mysql-ignore-errors=${IGNORE_ERRNOS}`,
  ];
}

/** sysbench prepare, then each source keeps (and accepts) only the ids it owns. */
async function prepareSources(env: BenchEnv, tableSize: number): Promise<void> {
  const { h, peers } = env;
  log(
    `tail: sysbench prepare on s0, s1 (${TABLES.length} tables × ${tableSize} rows, then pruned to owned ids)`,
  );
  await Promise.all(
    SOURCES.map(async (s, residue) => {
      await h.query(s, `DROP DATABASE IF EXISTS ${DB}`);
      await h.query(s, `CREATE DATABASE ${DB}`);
      const r = await h.run(peers.sysbench!, [...sysbenchArgs(env, s, tableSize), '--threads=1', 'prepare'], {
        label: `sysbench prepare ${s}`,
      });
      if (r.code !== 0) throw new Error(failureNote(`sysbench prepare on ${s}`, r));
      await h.withConn(s, async (c) => {
        await c.query('SET SESSION sql_log_bin = 0');
        for (const t of TABLES) {
          const owned = `MOD(CRC32(${qi('id')}), ${SOURCES.length}) = ${residue}`;
          await c.query(`DELETE FROM ${DB}.${t} WHERE NOT (${owned})`);
          await c.query(
            `CREATE TRIGGER ${DB}.${t}_owned BEFORE INSERT ON ${DB}.${t} FOR EACH ROW
               IF MOD(CRC32(NEW.id), ${SOURCES.length}) <> ${residue} THEN
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'id not owned by this shard';
               END IF`,
          );
        }
        // The live phase's probe table (its rows are inserted by the bench, owned ids only).
        await c.query(
          `CREATE TABLE ${DB}.${qi(PROBE)} (id BIGINT NOT NULL PRIMARY KEY, sent_at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
        );
      });
    }),
  );
}

/** The source's table definitions on other servers (without the AUTO_INCREMENT counter). */
async function createTables(insts: Instance[], env: BenchEnv): Promise<void> {
  const defs = await env.h.withConn('s0', async (c) => {
    const out: string[] = [];
    for (const t of [...TABLES, PROBE]) {
      const [r] = await c.query(`SHOW CREATE TABLE ${DB}.${t}`);
      out.push(
        String((r as Record<string, unknown>[])[0]?.['Create Table']).replace(/ AUTO_INCREMENT=\d+/, ''),
      );
    }
    return out;
  });
  for (const i of insts) {
    await env.h.withConn(i, async (c) => {
      await c.query(`DROP DATABASE IF EXISTS ${DB}`);
      await c.query(`CREATE DATABASE ${DB}`);
      await c.query(`USE ${DB}`);
      for (const d of defs) await c.query(d);
    });
  }
}

/** Load r0 with both sources' sbtest rows (they are disjoint); returns a note if impossible. */
async function loadReplica(env: BenchEnv): Promise<string | undefined> {
  const { h, peers } = env;
  if (!peers.mysqldump || !peers.mariadb) return `mysqldump/mariadb client not found; ${INSTALL_HINT}`;
  log('tail: loading the replica r0 with the sources’ sbtest rows (not timed)');
  for (const s of SOURCES) {
    const dump = [
      peers.mysqldump,
      ...h.mysqlClientArgs(s),
      '--single-transaction',
      '--no-create-info',
      '--skip-triggers',
      DB,
    ];
    const load = [peers.mariadb, ...h.mysqlClientArgs('r0'), DB];
    const r = await h.shell(`${dump.map(sh).join(' ')} | ${load.map(sh).join(' ')}`, {
      label: `replica load ${s}`,
    });
    if (r.code !== 0) return failureNote('loading the replica', r);
  }
  return undefined;
}

async function positions(env: BenchEnv): Promise<Record<string, Position>> {
  const out: Record<string, Position> = {};
  for (const s of SOURCES) {
    const [r] = await env.h.query(s, 'SHOW MASTER STATUS');
    out[s] = { file: String(r?.File), pos: Number(r?.Position) };
  }
  return out;
}

/**
 * Row changes in the recorded binlogs between `start` and `end`, counted by decoding them with
 * mariadb-binlog: exactly the rows the tailer and the replica have to apply (transactions that
 * sysbench rolled back after a deadlock are not in the binlog, so they do not count).
 */
async function binlogRows(
  env: BenchEnv,
  start: Record<string, Position>,
  end: Record<string, Position>,
): Promise<number | string> {
  const { h, peers } = env;
  if (!peers.mysqlbinlog) return `mariadb-binlog not found (counts the recorded rows); ${INSTALL_HINT}`;
  let n = 0;
  for (const s of SOURCES) {
    const logs = await h.query(s, 'SHOW BINARY LOGS');
    const names = logs.map((r) => String(r.Log_name));
    const files = names.slice(names.indexOf(start[s]!.file), names.indexOf(end[s]!.file) + 1);
    const decode = [
      peers.mysqlbinlog,
      '--read-from-remote-server',
      '--host=127.0.0.1',
      `--port=${h.ports[s as Instance]}`,
      '--user=root',
      '--base64-output=decode-rows',
      '--verbose',
      `--start-position=${start[s]!.pos}`,
      `--stop-position=${end[s]!.pos}`,
      ...files,
    ];
    const r = await h.shell(
      `${decode.map(sh).join(' ')} | { grep -c -E '^### (INSERT INTO|UPDATE|DELETE FROM) ' || true; }`,
      {
        label: `count binlog rows ${s}`,
      },
    );
    if (r.code !== 0) return failureNote('counting the binlog rows', r);
    n += Number(r.stdout.trim());
  }
  return n;
}

/** Native replication from the recorded start to the recorded end positions; the apply time. */
async function replicate(
  env: BenchEnv,
  start: Record<string, Position>,
  end: Record<string, Position>,
  timeoutS: number,
): Promise<{ seconds: number } | { error: string }> {
  return env.h.withConn('r0', async (c) => {
    for (const s of SOURCES) {
      await c.query(
        `CHANGE MASTER '${s}' TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ?, MASTER_USER = 'root', MASTER_PASSWORD = '',
           MASTER_LOG_FILE = ?, MASTER_LOG_POS = ?, MASTER_USE_GTID = no`,
        [env.h.ports[s as Instance], start[s]!.file, start[s]!.pos],
      );
    }
    const t0 = process.hrtime.bigint();
    await c.query('START ALL SLAVES');
    const deadline = Date.now() + timeoutS * 1000;
    try {
      while (Date.now() < deadline) {
        const [st] = await c.query('SHOW ALL SLAVES STATUS');
        const status = st as Record<string, unknown>[];
        const err = status.find((x) => x.Last_SQL_Error || x.Last_IO_Error);
        if (err)
          return {
            error: `replication stopped: ${String(err.Last_SQL_Error || err.Last_IO_Error).slice(0, 200)}`,
          };
        const done = SOURCES.every((s) => {
          const x = status.find((y) => y.Connection_name === s);
          return (
            x && x.Relay_Master_Log_File === end[s]!.file && Number(x.Exec_Master_Log_Pos) >= end[s]!.pos
          );
        });
        if (done) return { seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
        await sleep(20);
      }
      return { error: `replica did not catch up within ${timeoutS} s` };
    } finally {
      await c.query('STOP ALL SLAVES').catch(() => undefined);
    }
  });
}
