/**
 * Output discipline: results (tables, --json) go to stdout; logs and progress go to stderr.
 * Every string that leaves the process through these helpers passes through `redact`, which
 * removes secret values registered at resolution time and masks passwords inside DSNs.
 */
import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';
import { asReshardError, ReshardError } from './errors.js';

const secrets = new Set<string>();

/** Register a resolved secret so it is scrubbed from every log line, error and report. */
export function registerSecret(value: string): void {
  // Very short values would redact ordinary text ("a", "1"); such passwords are still
  // kept out of argv/state by design, but scrubbing them would mangle output.
  if (value.length >= 4) secrets.add(value);
}

/**
 * The environment without reshard's secrets, for a child process reshard starts (the --on-flip
 * hook): every variable holding a registered password, and RESHARD_CONTROL_PASSWORD.
 */
export function envWithoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (k === 'RESHARD_CONTROL_PASSWORD' || (v !== undefined && secrets.has(v))) continue;
    out[k] = v;
  }
  return out;
}

const DSN_PASSWORD = /\b(mysql|mariadb|mysqlx):\/\/([^:@/\s]*):([^@\s]*)@/gi;
const KV_PASSWORD = /\b(password|passwd|pwd)=([^\s&;]+)/gi;

/** Mask a DSN's password: mysql://user:secret@host → mysql://user:***@host. */
export function maskDsn(dsn: string): string {
  return dsn.replace(DSN_PASSWORD, '$1://$2:***@').replace(KV_PASSWORD, '$1=***');
}

export function redact(text: string): string {
  let out = maskDsn(text);
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join('***');
  }
  return out;
}

function redactDeep(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map(redactDeep);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = /password|secret|token/i.test(k) ? '***' : redactDeep(v);
    }
    return out;
  }
  return value;
}

let logger: Logger | undefined;

/** The process-wide logger: JSON lines on stderr (fd 2), level from RESHARD_LOG_LEVEL. */
export function log(): Logger {
  if (!logger) {
    // Loaded on first use: pino and its dependencies take ~40 ms of a 2-core machine's CPU to
    // load, and most commands (verify, plan, status) never log. It is CommonJS, so a synchronous
    // require keeps log() synchronous.
    const { pino } = createRequire(import.meta.url)('pino') as { pino: typeof Pino };
    logger = pino(
      {
        level: process.env.RESHARD_LOG_LEVEL ?? 'info',
        base: undefined,
        formatters: { log: (obj) => redactDeep(obj) as Record<string, unknown> },
        hooks: {
          logMethod(args, method) {
            const mapped = args.map((a) => (typeof a === 'string' ? redact(a) : a));
            method.apply(this, mapped as Parameters<typeof method>);
          },
        },
      },
      pino.destination({ fd: 2, sync: true }),
    );
  }
  return logger;
}

/** Write a result line to stdout (redacted). */
export function out(text: string): void {
  process.stdout.write(redact(text.endsWith('\n') ? text : `${text}\n`));
}

/** Write a result object as JSON to stdout (redacted, bigint-safe). */
export function outJson(value: unknown): void {
  out(toJson(value));
}

/** JSON with bigints as decimal strings: exact, and readable by every consumer. */
export function toJson(value: unknown, indent = 2): string {
  return JSON.stringify(redactDeep(value), (_k, v) => (typeof v === 'bigint' ? v.toString() : v), indent);
}

/** Human line on stderr: progress, notes, warnings. */
export function note(text: string): void {
  process.stderr.write(redact(text.endsWith('\n') ? text : `${text}\n`));
}

/** Render an error for humans (stderr) or machines (stdout JSON) and return its exit code. */
export function reportError(err: unknown, opts: { json: boolean }): number {
  const e = asReshardError(err);
  if (opts.json) {
    outJson({ ok: false, error: e.toJSON() });
  }
  const lines = [`reshard: error ${e.code}: ${e.message}`];
  if (e.where && !e.message.includes(e.where)) lines.push(`  at: ${e.where}`);
  if (e.hint) lines.push(`  fix: ${e.hint}`);
  if (e.kind === 'bug' && e.cause instanceof Error && e.cause.stack) lines.push(e.cause.stack);
  note(lines.join('\n'));
  return e.exitCode;
}

/** Simple aligned text table for TTY and plain output. */
export function table(headers: string[], rows: (string | number | bigint)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => String(c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return /^-?[\d.,]+%?$/.test(c) ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [fmt(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(fmt)].join('\n');
}

export { ReshardError };
