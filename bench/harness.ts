/**
 * What every bench area shares: child processes (timed, RSS-sampled, killed on abort), SQL on
 * the bench sandbox, the reshard CLI with feature detection, and the peer tools found on PATH.
 *
 * Lifecycle: new Harness() → areas run (each child registered while it runs) → shutdown()
 * kills whatever is still running (SIGTERM to its process group, SIGKILL after a grace period).
 * Children run in their own process group so that Ctrl-C reaches only the bench, which then
 * stops them itself — and never anything it did not start.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import mysql, { type Connection, type RowDataPacket } from 'mysql2/promise';
import { type CommandMemory, RssSampler } from './memory.js';

export type Instance = 'ctl' | 's0' | 's1' | 't0' | 't1' | 't2' | 'r0';
export const INSTANCES: readonly Instance[] = ['ctl', 's0', 's1', 't0', 't1', 't2', 'r0'];
export const SOURCES = ['s0', 's1'] as const;
export const TARGETS = ['t0', 't1', 't2'] as const;

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export interface RunOptions {
  label: string;
  /** Sample peak RSS of the process tree. */
  rss?: boolean;
  /** Kill the child (and report failure) after this long. */
  timeoutMs?: number;
  /** Stop the child (SIGTERM to its group) when this aborts: for commands that run until told to stop. */
  signal?: AbortSignal;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  stdout: string;
  /** Last 8 KB of stderr, for error notes. */
  stderrTail: string;
  peakRssMb: number;
  /** Stopped by the bench after RunOptions.timeoutMs. */
  timedOut: boolean;
}

const MAX_STDOUT = 32 * 1024 * 1024;

export class Harness {
  readonly root: string;
  readonly ports: Record<Instance, number>;
  readonly memory: CommandMemory[] = [];
  private readonly live = new Map<number, string>();
  private aborted = false;

  constructor(root: string, basePort: number) {
    this.root = root;
    this.ports = Object.fromEntries(INSTANCES.map((n, i) => [n, basePort + i])) as Record<Instance, number>;
  }

  get isAborted(): boolean {
    return this.aborted;
  }

  /** Run a command to completion; never throws for a non-zero exit (the caller decides). */
  run(cmd: string, args: string[], opts: RunOptions): Promise<RunResult> {
    if (this.aborted) return Promise.reject(new Error('bench aborted'));
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, {
        cwd: this.root,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const pid = child.pid;
      if (pid === undefined) {
        child.once('error', reject);
        return;
      }
      this.live.set(pid, opts.label);
      const sampler = opts.rss ? new RssSampler(pid) : undefined;
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (stdout.length < MAX_STDOUT) stdout += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d).slice(-8192);
      });
      const heartbeat = setInterval(() => {
        const s = Number(process.hrtime.bigint() - started) / 1e9;
        log(
          `  … ${opts.label} running ${s.toFixed(0)} s${sampler ? `, peak RSS ${sampler.peakMb().toFixed(0)} MB` : ''}`,
        );
      }, 15_000);
      let timedOut = false;
      const timer = opts.timeoutMs
        ? setTimeout(() => {
            timedOut = true;
            log(`  ${opts.label} exceeded ${opts.timeoutMs! / 1000} s; stopping it`);
            killGroup(pid, 'SIGTERM');
          }, opts.timeoutMs)
        : undefined;
      const onAbort = () => killGroup(pid, 'SIGTERM');
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) onAbort();
      child.once('error', (e) => {
        clearInterval(heartbeat);
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        sampler?.stop();
        this.live.delete(pid);
        reject(e);
      });
      child.once('close', (code, signal) => {
        clearInterval(heartbeat);
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        const peakRssMb = sampler?.stop() ?? 0;
        this.live.delete(pid);
        resolve({
          code,
          signal,
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
          stdout,
          stderrTail: stderr,
          peakRssMb,
          timedOut,
        });
      });
    });
  }

  /** Run a shell pipeline with pipefail (for `mysqldump | mariadb`). */
  shell(script: string, opts: RunOptions): Promise<RunResult> {
    return this.run('bash', ['-o', 'pipefail', '-c', script], opts);
  }

  /** Stop every child still running: SIGTERM to its group, SIGKILL after `graceMs`. */
  async shutdown(graceMs = 3000): Promise<void> {
    this.aborted = true;
    const pids = [...this.live.keys()];
    if (pids.length === 0) return;
    log(`stopping ${pids.length} child process(es): ${[...this.live.values()].join(', ')}`);
    for (const pid of pids) killGroup(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && pids.some(alive)) await sleep(50);
    for (const pid of pids.filter(alive)) killGroup(pid, 'SIGKILL');
  }

  // --- SQL on the bench sandbox -------------------------------------------------------------

  connect(inst: Instance, database?: string): Promise<Connection> {
    return mysql.createConnection({
      host: '127.0.0.1',
      port: this.ports[inst],
      user: 'root',
      ...(database ? { database } : {}),
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      charset: 'utf8mb4_unicode_ci',
      multipleStatements: false,
    });
  }

  async withConn<T>(inst: Instance, fn: (c: Connection) => Promise<T>, database?: string): Promise<T> {
    const c = await this.connect(inst, database);
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async query<T = RowDataPacket>(inst: Instance, sql: string, params: unknown[] = []): Promise<T[]> {
    return this.withConn(inst, async (c) => {
      const [rows] = await c.query(sql, params);
      return rows as T[];
    });
  }

  /** Sum of COUNT(*) over the given tables of one database on several servers. */
  async countRows(insts: readonly Instance[], database: string, tables: readonly string[]): Promise<number> {
    const counts = await Promise.all(
      insts.map((i) =>
        this.withConn(i, async (c) => {
          const [have] = await c.query<RowDataPacket[]>(
            'SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?',
            [database],
          );
          const present = new Set(have.map((r) => String(r.t)));
          let n = 0;
          for (const t of tables) {
            if (!present.has(t)) continue;
            const [r] = await c.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${qi(database)}.${qi(t)}`);
            n += Number(r[0]?.n ?? 0);
          }
          return n;
        }),
      ),
    );
    return counts.reduce((a, b) => a + b, 0);
  }

  mysqlClientArgs(inst: Instance): string[] {
    return ['-h127.0.0.1', `-P${this.ports[inst]}`, '-uroot', '--default-character-set=utf8mb4'];
  }
}

export function qi(ident: string): string {
  return `\`${ident.replace(/`/g, '``')}\``;
}

/** Single-quote for bash. */
export function sh(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** Busy and total jiffies of all CPUs, from /proc/stat (undefined where there is none). */
function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/**
 * Wait until the machine is quiet: under 15 % of one CPU busy over half a second, for at most
 * 20 s. Called before each timed run of a tool, whichever tool: a run used to start while the
 * servers still purged and flushed what the previous step wrote (a copy of 2 M rows just before
 * the full verify), and the tool measured next paid for it. Returns the seconds waited.
 */
export async function quiet(label: string): Promise<number> {
  const t0 = Date.now();
  const cpus = Math.max(1, availableParallelism());
  for (;;) {
    const a = cpuTimes();
    await sleep(500);
    const b = cpuTimes();
    if (!a || !b) return 0;
    const busyCpus = ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * cpus;
    if (busyCpus < 0.15 || Date.now() - t0 > 20_000) {
      const waited = (Date.now() - t0) / 1000;
      if (waited > 1)
        log(
          `${label}: waited ${waited.toFixed(1)} s for the machine to go quiet (${busyCpus.toFixed(2)} CPUs busy)`,
        );
      return waited;
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {}
  }
}

/** First line of a tool's version output, or undefined when the tool is not on PATH. */
export function toolVersion(cmd: string, args = ['--version']): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status === null) return undefined;
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return text.split('\n')[0]?.trim() || cmd;
}

// --- the reshard CLI --------------------------------------------------------------------------

export interface CommandInfo {
  available: boolean;
  /** The command's --help text (to check for the flags the bench needs). */
  help: string;
}

/** No reshard command of the bench should take this long; a hung one is stopped and reported. */
const DEFAULT_TIMEOUT_MS = 60 * 60_000;

/** Runs bin/reshard (dist/), detects which commands exist, records each run's peak RSS. */
export class ReshardCli {
  private readonly bin: string;
  private readonly detected = new Map<string, CommandInfo>();
  private runs = 0;

  /** Where each run's stdout and stderr are written, if set. */
  constructor(
    private readonly h: Harness,
    private readonly logDir?: string,
  ) {
    this.bin = join(h.root, 'bin', 'reshard');
  }

  command(name: string): CommandInfo {
    let info = this.detected.get(name);
    if (!info) {
      const r = spawnSync(this.bin, [name, '--help'], {
        cwd: this.h.root,
        encoding: 'utf8',
        timeout: 30_000,
      });
      const help = `${r.stdout ?? ''}${r.stderr ?? ''}`;
      // commander answers `reshard <unknown> --help` with the program's help and exit 0.
      info = { available: r.status === 0 && help.includes(`Usage: reshard ${name} `), help };
      this.detected.set(name, info);
    }
    return info;
  }

  /**
   * Why `name` cannot be used with these flags, or undefined when it can. Flags are checked
   * against its --help, so a command that exists but lacks a needed flag is reported too.
   */
  unavailable(name: string, flags: string[] = []): string | undefined {
    const c = this.command(name);
    if (!c.available) return `reshard ${name}: not available yet`;
    const absent = flags.filter((f) => !c.help.includes(f));
    return absent.length ? `reshard ${name}: no ${absent.join(', ')} yet` : undefined;
  }

  /** Run one command; its peak RSS is recorded for the memory area under `memoryLabel`. */
  async run(
    args: string[],
    opts: { memoryLabel: string; rows: number; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<RunResult> {
    log(`  $ reshard ${args.join(' ')}`);
    const r = await this.h.run(this.bin, args, {
      label: `reshard ${args[0]}`,
      rss: true,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    this.h.memory.push({ command: opts.memoryLabel, peakRssMb: r.peakRssMb, rows: opts.rows });
    if (this.logDir) {
      // Each run's output, kept until the next bench run (for looking into a surprising figure).
      mkdirSync(this.logDir, { recursive: true });
      const name = `${String(++this.runs).padStart(2, '0')}-${opts.memoryLabel.replace(/[^\w.-]+/g, '_')}`;
      writeFileSync(
        join(this.logDir, `${name}.log`),
        `$ reshard ${args.join(' ')}\nexit ${r.code ?? r.signal} after ${r.seconds.toFixed(2)} s, peak RSS ${r.peakRssMb.toFixed(1)} MB\n\n--- stdout\n${r.stdout}\n--- stderr (tail)\n${r.stderrTail}\n`,
      );
    }
    return r;
  }
}

/** A short reason from a failed reshard run: its JSON error message, else its last stderr line. */
export function failureNote(what: string, r: RunResult): string {
  const json = lastJson(r.stdout) ?? lastJson(r.stderrTail);
  const err = json?.error as { message?: string; code?: string } | undefined;
  const lastLine = (s: string) =>
    s
      .trim()
      .split('\n')
      .filter((l) => l.trim() && !l.startsWith('{'))
      .pop();
  const msg =
    err?.message ??
    (typeof json?.message === 'string' ? json.message : undefined) ??
    lastLine(r.stderrTail) ??
    lastLine(r.stdout.slice(-8192)) ??
    '';
  if (r.timedOut) return `${what} timed out after ${r.seconds.toFixed(0)} s and was stopped`;
  return `${what} failed (exit ${r.code ?? r.signal}${err?.code ? `, ${err.code}` : ''}): ${msg.slice(0, 200)}`;
}

/** The last line of `text` that parses as a JSON object, if any. */
export function lastJson(text: string): Record<string, unknown> | undefined {
  const whole = text.trim();
  if (whole.startsWith('{')) {
    try {
      return JSON.parse(whole) as Record<string, unknown>;
    } catch {}
  }
  const lines = whole.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!.trim();
    if (!l.startsWith('{')) continue;
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {}
  }
  return undefined;
}

// --- peers --------------------------------------------------------------------------------------

export interface Peers {
  /** Executable name (mysqldump or mariadb-dump), or undefined when absent. */
  mysqldump?: string;
  mariadb?: string;
  mydumper?: string;
  myloader?: string;
  sysbench?: string;
  ptTableChecksum?: string;
  mysqlbinlog?: string;
  versions: Record<string, string>;
}

export function findPeers(): Peers {
  const versions: Record<string, string> = {};
  const pick = (names: string[], args?: string[]): string | undefined => {
    for (const n of names) {
      const v = toolVersion(n, args);
      if (v) {
        versions[n] = v;
        return n;
      }
    }
    return undefined;
  };
  const peers: Peers = { versions };
  const set = <K extends Exclude<keyof Peers, 'versions'>>(k: K, v: string | undefined) => {
    if (v) peers[k] = v;
  };
  set('mysqldump', pick(['mysqldump', 'mariadb-dump']));
  set('mariadb', pick(['mariadb', 'mysql']));
  set('mydumper', pick(['mydumper']));
  set('myloader', pick(['myloader']));
  set('sysbench', pick(['sysbench']));
  set('ptTableChecksum', pick(['pt-table-checksum']));
  set('mysqlbinlog', pick(['mariadb-binlog', 'mysqlbinlog']));
  return peers;
}

export const INSTALL_HINT =
  'install with `bench/install-peers.sh` (apt-get) or `npm run bench -- --install-peers`';

/** The repo root: bench/ lives directly under it. */
export function repoRoot(): string {
  const root = join(import.meta.dirname, '..');
  if (!existsSync(join(root, 'package.json')))
    throw new Error(`cannot find the reshard checkout from ${root}`);
  return root;
}
