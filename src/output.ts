/**
 * Output discipline: results (tables, --json) go to stdout; logs and progress go to stderr.
 * Every string that leaves the process through these helpers passes through `redact`, which
 * removes secret values registered at resolution time and masks passwords inside DSNs.
 *
 * State written to the control schema (`toJson`) is never redacted: it holds table and column
 * names such as `password_resets` or `token`, which are data, and no password reaches it.
 */
import { createRequire } from 'node:module';
import type { Logger, pino as Pino } from 'pino';
import { dsnMayCarryPassword } from './db/dsn.js';
import { asReshardError, ReshardError } from './errors.js';

const secrets = new Set<string>();
/** Environment variables a secret was resolved from, whatever its length. */
const secretEnvNames = new Set<string>();

/**
 * Register a resolved secret so it is scrubbed from every log line, error and report; `fromEnv`
 * names the environment variable it was read from, which child processes then do not inherit.
 */
export function registerSecret(value: string, fromEnv?: string): void {
  if (fromEnv !== undefined) secretEnvNames.add(fromEnv);
  // Very short values would redact ordinary text ("a", "1"); such passwords are still
  // kept out of argv/state by design, but scrubbing them would mangle output.
  if (value.length >= 4) secrets.add(value);
}

/**
 * The environment without reshard's secrets, for a child process reshard starts (the --on-flip
 * hook): every variable a password was resolved from (a short one too), every variable holding a
 * registered password, RESHARD_CONTROL_PASSWORD, and RESHARD_CONTROL_DSN if it carries a password
 * (with --control given it was never parsed, so never refused).
 */
export function envWithoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (k === 'RESHARD_CONTROL_PASSWORD' || secretEnvNames.has(k)) continue;
    if (v !== undefined && secrets.has(v)) continue;
    if (k === 'RESHARD_CONTROL_DSN' && v !== undefined && dsnMayCarryPassword(v)) continue;
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

/** Registered secrets and DSN passwords in every string of a value; keys and other values as they are. */
function redactStrings(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object') return value;
  // What JSON.stringify will serialize (a Date's text, a Buffer's bytes, a ReshardError's fields).
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    const shown: unknown = toJSON.call(value);
    if (shown !== value) return redactStrings(shown);
  }
  if (Array.isArray(value)) return value.map(redactStrings);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactStrings(v);
  return out;
}

/** Keys under which a driver or connection config carries a password (mysql2's `password`, a DSN's `pwd`). */
const CREDENTIAL_KEY = /^(password|passwd|pwd)$/i;

/**
 * A log line's fields: strings redacted, and a string under a credential key masked — a logged
 * connection config would carry a password too short to register. Objects under such a key
 * (a `{ env }` / `{ file }` reference) say where a password is, not what it is.
 */
function redactLogFields(value: unknown): unknown {
  if (typeof value === 'string') return redact(value);
  if (Array.isArray(value)) return value.map(redactLogFields);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = CREDENTIAL_KEY.test(k) && typeof v === 'string' ? '***' : redactLogFields(v);
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
        formatters: { log: (obj) => redactLogFields(obj) as Record<string, unknown> },
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
  out(toReportJson(value));
}

/**
 * JSON with bigints as decimal strings: exact, and readable by every consumer. Not redacted:
 * this is the form of state in the control schema, which must read back exactly as written.
 */
export function toJson(value: unknown, indent = 2): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), indent);
}

/**
 * JSON for a person or a script (--json, --report): registered secrets and DSN passwords masked
 * in string values; table, column and key names and all other values exactly as they are.
 */
export function toReportJson(value: unknown, indent = 2): string {
  return toJson(redactStrings(value), indent);
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
