/**
 * `npm run bench [-- --rows N --only copy,verify,… --keep --base-port P --install-peers]`
 *
 * Runs reshard and its peers side by side on one seeded data set in the bench's own sandbox,
 * prints a table of absolute figures and ratios (stdout), progress on stderr, and writes
 * bench/results/latest.{md,json}. Order: plan (no servers) → sandbox + seed → copy → verify →
 * tail → memory. Whatever happens — an area failing, Ctrl-C — every child process and server
 * the bench started is stopped before it exits.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findServerBinary } from '../src/sandbox/instances.js';
import { benchCopy } from './copy.js';
import { findPeers, Harness, INSTALL_HINT, log, type Peers, ReshardCli, repoRoot } from './harness.js';
import { memoryRows } from './memory.js';
import { benchPlan } from './plan.js';
import { AREAS, type Area, type Row, type RunInfo, renderText, writeResults } from './report.js';
import {
  type BenchEnv,
  makePlan,
  resetWorkDir,
  seedShop,
  startSandbox,
  stopSandbox,
  writeShopTopologies,
} from './sandbox.js';
import { benchTail } from './tail.js';
import { benchVerify } from './verify.js';

const USAGE = `usage: npm run bench [-- options]

  --rows N          rows per source shard (2 sources; default 1000000)
  --only LIST       areas to run, comma-separated: ${AREAS.join(',')} (default: all)
  --keep            leave the bench sandbox running afterwards (for inspection)
  --base-port P     first port of the bench sandbox (default 35400, +10 per bench already running; uses P … P+6)
  --install-peers   run bench/install-peers.sh first (apt-get; needs root or sudo)
`;

interface Options {
  rows: number;
  areas: Area[];
  keep: boolean;
  basePort: number;
  /** --base-port was given: use exactly those ports (no slot offset). */
  portGiven: boolean;
  installPeers: boolean;
}

const DEFAULT_BASE_PORT = 35400;

/**
 * Claim a bench slot: slot 0 is .reshard/bench on the base ports, slot k is .reshard/bench-k on
 * ports 10·k higher. A slot is held by a lock file naming a live pid, so two benches started at
 * once (two engineers on one machine) get separate sandboxes instead of sharing one.
 */
function claimSlot(root: string, opts: Options): { stateDir: string; basePort: number; release: () => void } {
  for (let k = 0; k < 8; k++) {
    const stateDir = join(root, '.reshard', k === 0 ? 'bench' : `bench-${k}`);
    mkdirSync(stateDir, { recursive: true });
    const lock = join(stateDir, 'lock');
    if (existsSync(lock)) {
      const pid = Number(readFileSync(lock, 'utf8').trim());
      if (pid && pid !== process.pid && alive(pid)) continue;
      rmSync(lock, { force: true });
    }
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
    } catch {
      continue; // another bench took it between our check and our write
    }
    if (k > 0) log(`another bench is running; using ${stateDir}`);
    return {
      stateDir,
      basePort: opts.portGiven ? opts.basePort : opts.basePort + 10 * k,
      release: () => rmSync(lock, { force: true }),
    };
  }
  throw new Error('8 benches already running on this machine (.reshard/bench*/lock)');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      rows: { type: 'string', default: '1000000' },
      only: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'base-port': { type: 'string' },
      'install-peers': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const rows = Number(values.rows);
  if (!Number.isInteger(rows) || rows < 1000)
    throw new UsageError(`--rows must be a whole number ≥ 1000, got '${values.rows}'`);
  const basePort = Number(values['base-port'] ?? DEFAULT_BASE_PORT);
  if (!Number.isInteger(basePort) || basePort < 1024 || basePort > 65000)
    throw new UsageError(`--base-port must be a port from 1024 to 65000, got '${values['base-port']}'`);
  let areas = [...AREAS];
  if (values.only !== undefined) {
    const asked = values.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const bad = asked.filter((a) => !AREAS.includes(a as Area));
    if (bad.length || asked.length === 0)
      throw new UsageError(`--only takes areas from ${AREAS.join(',')}, got '${values.only}'`);
    areas = AREAS.filter((a) => asked.includes(a));
    if (areas.length === 1 && areas[0] === 'memory')
      throw new UsageError(
        'memory reports the peak RSS of the commands other areas run: combine it, e.g. --only copy,memory',
      );
  }
  return {
    rows,
    areas,
    keep: values.keep,
    basePort,
    portGiven: values['base-port'] !== undefined,
    installPeers: values['install-peers'],
  };
}

class UsageError extends Error {}

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** bin/reshard runs dist/ (its bundle): rebuild both when src/ is newer (as the CLI tests do). */
function buildDist(root: string): void {
  const cli = join(root, 'dist', 'bundle', 'cli.js');
  if (existsSync(cli) && newestMtime(join(root, 'src')) <= statSync(cli).mtimeMs) return;
  log('building dist/ (src/ is newer)');
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  } catch {
    // tsc still emits on type errors (work in progress elsewhere); the commands that fail say so.
    log('warning: tsc reported errors; measuring the emitted dist/ anyway');
  }
  execFileSync('node', ['scripts/bundle.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

function environment(root: string, peers: Peers): Record<string, string> {
  const git = spawnSync('git', ['describe', '--always', '--dirty'], {
    cwd: root,
    encoding: 'utf8',
  }).stdout.trim();
  let server = 'not found';
  try {
    const bin = findServerBinary();
    server = spawnSync(bin.path, ['--version'], { encoding: 'utf8' }).stdout.trim();
  } catch {}
  return {
    commit: git || 'unknown',
    node: process.version,
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    'load average at start': loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    server,
    ...peers.versions,
  };
}

async function main(argv: string[]): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseOptions(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const root = repoRoot();
  if (opts.installPeers) {
    const r = spawnSync(join(root, 'bench', 'install-peers.sh'), { stdio: 'inherit' });
    if (r.status !== 0) log('warning: bench/install-peers.sh failed; missing peers will be reported');
  }
  const peers = findPeers();
  const absent = (
    ['mysqldump', 'mariadb', 'mydumper', 'myloader', 'sysbench', 'ptTableChecksum', 'mysqlbinlog'] as const
  ).filter((k) => !peers[k]);
  if (absent.length) log(`peers not found: ${absent.join(', ')} — their rows will say so; ${INSTALL_HINT}`);

  const started = new Date();
  const slot = claimSlot(root, opts);
  process.once('exit', slot.release);
  const stateDir = slot.stateDir;
  const sandboxDir = join(stateDir, 'sandbox');
  const workDir = join(stateDir, 'work');
  resetWorkDir(workDir);
  const needsServers = opts.areas.some((a) => a === 'copy' || a === 'verify' || a === 'tail');
  const h = new Harness(root, slot.basePort);
  const cli = new ReshardCli(h, join(workDir, 'logs'));
  if (needsServers || opts.areas.includes('plan')) buildDist(root);
  const commands = ['init', 'plan', 'copy', 'tail', 'verify'];
  log(
    `reshard commands: ${commands.map((c) => `${c} ${cli.command(c).available ? 'yes' : 'not yet'}`).join(', ')}`,
  );

  let sandboxStarted = false;
  let cleaning: Promise<void> | undefined;
  const cleanup = () => {
    cleaning ??= (async () => {
      await h.shutdown();
      if (sandboxStarted)
        await stopSandbox(sandboxDir, opts.keep).catch((e) => log(`sandbox stop failed: ${e}`));
    })();
    return cleaning;
  };
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping everything the bench started`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const rows: Row[] = [];
  let failures = 0;
  const area = async (name: Area, fn: (out: Row[]) => Promise<void>) => {
    if (!opts.areas.includes(name) || h.isAborted) return;
    const t0 = Date.now();
    log(`== ${name}`);
    try {
      await fn(rows);
    } catch (e) {
      if (h.isAborted) return;
      failures++;
      log(`${name} failed: ${(e as Error).stack ?? e}`);
      rows.push({
        area: name,
        tool: 'bench',
        metric: 'error',
        value: Number.NaN,
        rows: 0,
        note: String((e as Error).message ?? e).slice(0, 300),
      });
    }
    log(`== ${name} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  };

  try {
    await area('plan', (out) => benchPlan(cli, workDir, out));
    if (needsServers) {
      sandboxStarted = true;
      await startSandbox(h, sandboxDir);
      const shopFiles = writeShopTopologies(h, workDir);
      const env: BenchEnv = {
        h,
        cli,
        peers,
        workDir,
        rowsPerSource: opts.rows,
        seed: 1,
        controlDsn: `mysql://root@127.0.0.1:${h.ports.ctl}/reshard_control`,
        shop: {
          ...shopFiles,
          plan: join(workDir, 'shop-plan.json'),
          rows: 0,
          database: 'shop',
        },
      };
      if (opts.areas.includes('copy') || opts.areas.includes('verify')) {
        await seedShop(env);
        const note = await makePlan(env, env.shop.from, env.shop.to, env.shop.plan, 'plan');
        if (note) env.shop.planNote = note;
      }
      await area('copy', (out) => benchCopy(env, out));
      await area('verify', (out) => benchVerify(env, out));
      await area('tail', (out) => benchTail(env, out));
    }
    if (opts.areas.includes('memory')) rows.push(...memoryRows(h.memory));
  } catch (e) {
    if (!h.isAborted) {
      log(`bench failed: ${(e as Error).stack ?? e}`);
      failures++;
    }
  } finally {
    await cleanup();
  }

  const info: RunInfo = {
    started,
    seconds: (Date.now() - started.getTime()) / 1000,
    rowsPerSource: opts.rows,
    areas: opts.areas,
    environment: environment(root, peers),
  };
  process.stdout.write(renderText(rows, info));
  const files = writeResults(join(root, 'bench', 'results'), rows, info);
  log(`wrote ${files.md} and ${files.json}`);
  return failures ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
