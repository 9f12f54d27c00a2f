/**
 * Local sandbox servers: real mariadbd (or mysqld) processes on loopback ports, each with its
 * own datadir, binary log in ROW format with FULL row image and metadata, and a distinct
 * server_id — what reshard requires of a production source.
 *
 * Lifecycle: up (init datadir if new → start → wait until it answers) … down (SIGTERM → wait).
 * Ownership: the sandbox only ever signals a process whose pid file lives in its own state
 * directory AND whose command line names its own datadir, so it can never stop a server it
 * did not start (such as the system MariaDB on 3306).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { PreconditionError, UsageError } from '../errors.js';

export interface InstanceSpec {
  name: string;
  port: number;
  serverId: number;
  /** Extra server options, e.g. ['--binlog-format=STATEMENT'] for preflight tests. */
  extraArgs?: string[];
}

export interface InstanceInfo extends InstanceSpec {
  datadir: string;
  socket: string;
  tmpdir: string;
  pidFile: string;
  errorLog: string;
}

export interface SandboxManifest {
  version: 1;
  flavor: 'mariadb' | 'mysql';
  binary: string;
  instances: InstanceInfo[];
}

export const DEFAULT_NAMES = ['ctl', 's0', 's1', 't0', 't1', 't2'];
export const DEFAULT_BASE_PORT = 34400;

export function defaultSandboxDir(): string {
  return resolve(process.env.RESHARD_SANDBOX_DIR ?? '.reshard/sandbox');
}

interface ServerBinary {
  path: string;
  flavor: 'mariadb' | 'mysql';
  installDb?: string;
}

/** Find mariadbd or mysqld on PATH or in /usr/sbin, with a clear error when neither exists. */
export function findServerBinary(): ServerBinary {
  const dirs = [
    ...(process.env.PATH ?? '').split(':').filter(Boolean),
    '/usr/sbin',
    '/usr/local/sbin',
    '/usr/local/mysql/bin',
  ];
  for (const name of ['mariadbd', 'mysqld']) {
    for (const d of dirs) {
      const p = join(d, name);
      if (!existsSync(p)) continue;
      const v = spawnSync(p, ['--version'], { encoding: 'utf8' });
      const text = `${v.stdout}${v.stderr}`;
      const flavor = /mariadb/i.test(text) ? 'mariadb' : 'mysql';
      let installDb: string | undefined;
      if (flavor === 'mariadb') {
        for (const n of ['mariadb-install-db', 'mysql_install_db']) {
          for (const dd of [...dirs, '/usr/bin']) {
            if (existsSync(join(dd, n))) {
              installDb = join(dd, n);
              break;
            }
          }
          if (installDb) break;
        }
      }
      return { path: p, flavor, ...(installDb ? { installDb } : {}) };
    }
  }
  throw new PreconditionError(
    'E_NO_SERVER_BINARY',
    'neither mariadbd nor mysqld was found on PATH or in /usr/sbin',
    {
      hint: 'install MariaDB: `sudo apt-get install -y mariadb-server` (Debian/Ubuntu) or `brew install mariadb` (macOS)',
    },
  );
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function serverArgs(bin: ServerBinary, inst: InstanceInfo): string[] {
  const args = [
    '--no-defaults',
    // MariaDB's --log-basename renames every log it is given after, so it comes before them: placed
    // last it moved the error log to <datadir>/sandbox.err, where our hints did not point.
    ...(bin.flavor === 'mariadb' ? ['--log-basename=sandbox'] : []),
    `--datadir=${inst.datadir}`,
    `--port=${inst.port}`,
    '--bind-address=127.0.0.1',
    `--socket=${inst.socket}`,
    `--pid-file=${inst.pidFile}`,
    `--log-error=${inst.errorLog}`,
    // Each instance gets its own tmpdir: instances sharing /tmp collide on temp-table file names.
    `--tmpdir=${inst.tmpdir}`,
    `--server-id=${inst.serverId}`,
    // The names the binlogs of existing sandboxes already have: MariaDB's came from
    // --log-basename (sandbox-bin), MySQL's from this option (binlog).
    `--log-bin=${join(inst.datadir, bin.flavor === 'mariadb' ? 'sandbox-bin' : 'binlog')}`,
    '--binlog-format=ROW',
    '--binlog-row-image=FULL',
    '--binlog-row-metadata=FULL',
    '--skip-name-resolve',
    '--innodb-buffer-pool-size=1G',
    // Torn-page protection guards against OS crashes, not process kills; the sandbox is disposable.
    '--innodb-doublewrite=0',
    '--innodb-log-file-size=256M',
    '--innodb-flush-log-at-trx-commit=2',
    '--sync-binlog=0',
    '--max-connections=500',
    '--max-allowed-packet=64M',
    '--character-set-server=utf8mb4',
    '--collation-server=utf8mb4_unicode_ci',
    '--local-infile=1',
    '--expire-logs-days=7',
  ];
  if (bin.flavor === 'mariadb') args.push('--performance-schema=OFF');
  if (bin.flavor === 'mysql') args.push('--gtid-mode=ON', '--enforce-gtid-consistency=ON', '--mysqlx=OFF');
  if (isRoot()) args.push('--user=root');
  return [...args, ...(inst.extraArgs ?? [])];
}

function initDatadir(bin: ServerBinary, inst: InstanceInfo): void {
  mkdirSync(inst.datadir, { recursive: true });
  mkdirSync(inst.tmpdir, { recursive: true });
  let r: ReturnType<typeof spawnSync>;
  if (bin.flavor === 'mariadb') {
    if (!bin.installDb) {
      throw new PreconditionError('E_NO_INSTALL_DB', 'mariadb-install-db was not found next to mariadbd', {
        hint: 'install the full server package: `sudo apt-get install -y mariadb-server`',
      });
    }
    r = spawnSync(
      bin.installDb,
      [
        '--no-defaults',
        `--datadir=${inst.datadir}`,
        `--tmpdir=${inst.tmpdir}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        ...(isRoot() ? ['--user=root'] : []),
      ],
      { encoding: 'utf8' },
    );
  } else {
    r = spawnSync(
      bin.path,
      [
        '--no-defaults',
        '--initialize-insecure',
        `--datadir=${inst.datadir}`,
        `--tmpdir=${inst.tmpdir}`,
        ...(isRoot() ? ['--user=root'] : []),
      ],
      {
        encoding: 'utf8',
      },
    );
  }
  if (r.status !== 0) {
    throw new PreconditionError(
      'E_SANDBOX_INIT',
      `initializing ${inst.name}'s datadir ${inst.datadir} failed`,
      {
        hint: `see the output below and ${inst.errorLog}\n${String(r.stderr ?? '').slice(-2000)}`,
      },
    );
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

function readPid(pidFile: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of our own server for this instance, if it is running; undefined otherwise. */
export function runningPid(inst: InstanceInfo): number | undefined {
  const pid = readPid(inst.pidFile);
  if (pid === undefined) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.includes(`--datadir=${inst.datadir}`) ? pid : undefined;
  } catch {
    // No /proc (macOS): fall back to signal 0, still guarded by our own pid file.
    try {
      process.kill(pid, 0);
      return pid;
    } catch {
      return undefined;
    }
  }
}

/** What the error log gained since `offset`: this start's lines only. */
function logSince(inst: InstanceInfo, offset: number): string {
  try {
    return readFileSync(inst.errorLog).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

function lastLines(text: string, n: number): string {
  return text.split('\n').slice(-n).join('\n');
}

function logSize(inst: InstanceInfo): number {
  try {
    return statSync(inst.errorLog).size;
  } catch {
    return 0;
  }
}

/** How long one start may take before it is reported. */
const START_TIMEOUT_MS = 60_000;

/**
 * Whether the server came up ('ready') or its process ended first ('exited'). Ready means it
 * logged "ready for connections" since `offset` of its error log, and its port takes
 * connections. The port alone is not enough: the server listens before it has finished
 * starting, and a stop or a purge of its datadir in that moment raced its start (seen in full
 * test runs: a SIGTERM not obeyed for 60 s, files appearing in a datadir being removed).
 */
async function waitReady(
  inst: InstanceInfo,
  offset: number,
  exited: () => boolean,
): Promise<'ready' | 'exited' | 'timeout'> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (
      existsSync(inst.pidFile) &&
      /ready for connections/.test(logSince(inst, offset)) &&
      (await portOpen(inst.port))
    )
      return 'ready';
    if (exited()) return 'exited';
    await new Promise((r) => setTimeout(r, 50));
  }
  return 'timeout';
}

/**
 * Sandbox ports lie in Linux's ephemeral range (32768–60999), so a restarted server can find its
 * port taken by the local end of some client's outgoing connection (seen: a test's connections
 * took a port between two starts). Once that connection closes, its end lingers in TIME_WAIT for
 * 60 s, and a socket bound without SO_REUSEADDR blocks even a SO_REUSEADDR bind meanwhile
 * (measured: a port so held refused mariadbd for 60 s after the close). So a start that fails to
 * bind is retried for up to this long before it is reported.
 */
const BIND_RETRY_MS = 120_000;

function portInUse(inst: InstanceInfo): PreconditionError {
  return new PreconditionError(
    'E_PORT_IN_USE',
    `port ${inst.port} for sandbox instance ${inst.name} is already in use by another process`,
    { hint: 'stop that process or choose other ports with --base-port' },
  );
}

export async function startInstance(bin: ServerBinary, inst: InstanceInfo): Promise<void> {
  if (runningPid(inst) !== undefined) return;
  if (await portOpen(inst.port)) throw portInUse(inst);
  if (!existsSync(join(inst.datadir, 'mysql'))) initDatadir(bin, inst);
  mkdirSync(inst.tmpdir, { recursive: true });
  const retryUntil = Date.now() + BIND_RETRY_MS;
  for (;;) {
    const offset = logSize(inst);
    let ended = false;
    const child = spawn(bin.path, serverArgs(bin, inst), { detached: true, stdio: 'ignore' });
    child.once('exit', () => {
      ended = true;
    });
    child.once('error', () => {
      ended = true;
    });
    child.unref();
    const outcome = await waitReady(inst, offset, () => ended);
    if (outcome === 'ready') return;
    const log = logSince(inst, offset);
    if (outcome === 'exited' && /Address already in use|errno: 98|error: 98/i.test(log)) {
      // A listener (another server, another sandbox on overlapping ports) is a real conflict:
      // report it at once. Only a port held by some connection's local end is waited out.
      if (await portOpen(inst.port)) throw portInUse(inst);
      if (Date.now() < retryUntil) {
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
    }
    throw new PreconditionError(
      'E_SANDBOX_START',
      outcome === 'exited'
        ? `sandbox instance ${inst.name} exited while starting on port ${inst.port}`
        : `sandbox instance ${inst.name} did not start on port ${inst.port} within ${START_TIMEOUT_MS} ms`,
      { hint: `see its error log ${inst.errorLog}; its last lines:\n${lastLines(log, 15)}` },
    );
  }
}

export async function stopInstance(
  inst: InstanceInfo,
  opts: { signal?: NodeJS.Signals; timeoutMs?: number } = {},
): Promise<boolean> {
  const pid = runningPid(inst);
  if (pid === undefined) return false;
  process.kill(pid, opts.signal ?? 'SIGTERM');
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new PreconditionError(
    'E_SANDBOX_STOP',
    `sandbox instance ${inst.name} (pid ${pid}) did not stop in time`,
    {
      hint: `check ${inst.errorLog}; kill -9 ${pid} if it is hung`,
    },
  );
}

export function instanceInfo(dir: string, spec: InstanceSpec): InstanceInfo {
  const base = join(dir, spec.name);
  return {
    ...spec,
    datadir: join(base, 'data'),
    socket: join(base, 'mysqld.sock'),
    tmpdir: join(base, 'tmp'),
    pidFile: join(base, 'mysqld.pid'),
    errorLog: join(base, 'error.log'),
  };
}

const MANIFEST = 'sandbox.json';

export function readManifest(dir: string): SandboxManifest | undefined {
  const p = join(dir, MANIFEST);
  if (!existsSync(p)) return undefined;
  const m = JSON.parse(readFileSync(p, 'utf8')) as SandboxManifest;
  if (m.version !== 1) {
    throw new UsageError('E_SANDBOX_MANIFEST', `${p} was written by another reshard version`, {
      hint: `run \`reshard sandbox down --purge\``,
    });
  }
  return m;
}

export interface UpOptions {
  dir: string;
  names?: string[];
  basePort?: number;
  extraArgs?: Record<string, string[]>;
}

/** Start (creating if needed) the sandbox; idempotent: running instances are left as they are. */
export async function sandboxUp(opts: UpOptions): Promise<SandboxManifest> {
  const bin = findServerBinary();
  mkdirSync(opts.dir, { recursive: true });
  const existing = readManifest(opts.dir);
  let instances: InstanceInfo[];
  if (existing && !opts.names) {
    // Recompute paths from the stable parts, so a manifest from an older layout still works.
    instances = existing.instances.map((i) =>
      instanceInfo(opts.dir, {
        name: i.name,
        port: i.port,
        serverId: i.serverId,
        ...(i.extraArgs ? { extraArgs: i.extraArgs } : {}),
      }),
    );
  } else {
    const names = opts.names ?? DEFAULT_NAMES;
    const base = opts.basePort ?? DEFAULT_BASE_PORT;
    instances = names.map((name, i) =>
      instanceInfo(opts.dir, {
        name,
        port: base + i,
        // Distinct and stable per port, so replication between sandbox servers is possible.
        serverId: base + i,
        ...(opts.extraArgs?.[name] ? { extraArgs: opts.extraArgs[name] } : {}),
      }),
    );
  }
  const manifest: SandboxManifest = { version: 1, flavor: bin.flavor, binary: bin.path, instances };
  writeFileSync(join(opts.dir, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  const results = await Promise.allSettled(instances.map((inst) => startInstance(bin, inst)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    // Leave nothing half-up: stop whatever this call managed to start, then report the failure.
    await Promise.allSettled(instances.map((inst) => stopInstance(inst)));
    throw failed.reason;
  }
  return manifest;
}

export async function sandboxDown(dir: string, opts: { purge?: boolean } = {}): Promise<string[]> {
  const m = readManifest(dir);
  if (!m) return [];
  const stopped: string[] = [];
  await Promise.all(
    m.instances.map(async (inst) => {
      if (await stopInstance(inst)) stopped.push(inst.name);
    }),
  );
  if (opts.purge) {
    for (const inst of m.instances) rmSync(join(dir, inst.name), { recursive: true, force: true });
    rmSync(join(dir, MANIFEST), { force: true });
  }
  return stopped.sort();
}

export interface InstanceStatus {
  name: string;
  port: number;
  serverId: number;
  running: boolean;
  pid?: number;
  dsn: string;
}

export function sandboxStatus(dir: string): InstanceStatus[] {
  const m = readManifest(dir);
  if (!m) return [];
  return m.instances.map((inst) => {
    const pid = runningPid(inst);
    return {
      name: inst.name,
      port: inst.port,
      serverId: inst.serverId,
      running: pid !== undefined,
      ...(pid !== undefined ? { pid } : {}),
      dsn: `mysql://root@127.0.0.1:${inst.port}/`,
    };
  });
}
