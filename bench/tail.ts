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
 */
import { join } from 'node:path';
import {
  failureNote,
  INSTALL_HINT,
  type Instance,
  lastJson,
  log,
  qi,
  SOURCES,
  sh,
  sleep,
  TARGETS,
} from './harness.js';
import { missing, type Row, row } from './report.js';
import { type BenchEnv, ensureInit, makePlan, writeTopology } from './sandbox.js';

const DB = 'sbtest';
const TABLES = ['sbtest1', 'sbtest2', 'sbtest3', 'sbtest4'];
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
  const tps = runs
    .map((r) => /transactions:\s+\d+\s+\(([\d.]+) per sec/.exec(r.stdout)?.[1])
    .filter(Boolean)
    .map(Number)
    .reduce((a, b) => a + b, 0);
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

  if (reshardNote) rows.push(missing('tail', 'reshard', 'rows_per_s', reshardNote));
  else {
    log('tail: reshard tail --until-caught-up over the recorded binlog');
    const args = ['tail', '--plan', plan, '--control', env.controlDsn, '--until-caught-up'];
    if (cli.command('tail').help.includes('--json')) args.push('--json');
    // Catching up must not take much longer than writing did; a tailer that never gets there is a result too.
    const r = await cli.run(args, {
      memoryLabel: 'tail',
      rows: changed,
      timeoutMs: Math.max(300, seconds * 30) * 1000,
    });
    if (r.code !== 0) rows.push(missing('tail', 'reshard', 'rows_per_s', failureNote('reshard tail', r)));
    else {
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
}

function topologyBase() {
  return {
    tables: TABLES.map((name) => ({ name, shardKey: 'id' })),
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
      });
    }),
  );
}

/** The source's table definitions on other servers (without the AUTO_INCREMENT counter). */
async function createTables(insts: Instance[], env: BenchEnv): Promise<void> {
  const defs = await env.h.withConn('s0', async (c) => {
    const out: string[] = [];
    for (const t of TABLES) {
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
