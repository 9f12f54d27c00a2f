/**
 * The control-schema migrator. `reshard init` calls `ensureControlSchema`; every other command
 * that reads or writes state calls `checkControlSchema` (through `openControl`), which changes
 * nothing and refuses a schema that is missing, behind, ahead of this binary, or whose applied
 * migrations no longer match the files shipped with it.
 *
 * Lifecycle of one `ensureControlSchema`: create the database if missing → take a named lock
 * (concurrent inits serialize; the loser then finds nothing to do) → create the version table →
 * compare applied rows with the files → apply pending files in order, recording each after its
 * last statement → release the lock.
 *
 * Crash safety: DDL commits implicitly, so a file cannot be applied atomically. A crash after
 * some statements of a file and before its version row leaves the file unrecorded, and the next
 * init runs it again from the top; migrations/README.md requires every statement to be safe to
 * run twice for exactly this reason.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Connection } from 'mysql2/promise';
import { q } from '../db/quote.js';
import { PreconditionError, ReshardError } from '../errors.js';
import { VERSION } from '../version.js';
import type { ControlConnection } from './control.js';

/** Shipped with the package; resolves from both src/state and dist/state. */
export const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url);

export const VERSION_TABLE = 'reshard_schema_version';

/** How long a second `init` waits for the first to finish migrating. */
const LOCK_TIMEOUT_SECONDS = 60;

export interface Migration {
  version: number;
  /** File name without the number and extension, e.g. `core`. */
  name: string;
  file: string;
  /** sha256 (hex) of the file text with CRLF normalised to LF. */
  checksum: string;
  statements: string[];
}

export interface AppliedMigration {
  version: number;
  name: string;
  checksum: string;
  appliedAt: string;
  reshardVersion: string;
}

export interface MigrateResult {
  database: string;
  /** Schema version after the run. */
  version: number;
  /** Migrations this run applied, in order; empty when already up to date. */
  applied: { version: number; name: string; checksum: string }[];
}

const FILE_RE = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/**
 * Split a migration file into statements. The rule (documented in migrations/README.md): whole
 * line `--` comments are dropped, and a line whose last non-blank character is `;` ends a
 * statement. No SQL parsing, so files must not end a line with `;` inside a string.
 */
export function splitStatements(sql: string, file = 'migration'): string[] {
  const statements: string[] = [];
  let current: string[] = [];
  for (const line of sql.replace(/\r\n/g, '\n').split('\n')) {
    if (/^\s*--/.test(line)) continue;
    const trimmed = line.trimEnd();
    if (trimmed.endsWith(';')) {
      current.push(trimmed.slice(0, -1));
      const stmt = current.join('\n').trim();
      if (stmt) statements.push(stmt);
      current = [];
    } else {
      current.push(line);
    }
  }
  if (current.join('\n').trim()) {
    throw bug(`${file}: the last statement does not end with ';' at the end of a line`);
  }
  return statements;
}

export function checksumOf(text: string): string {
  return createHash('sha256').update(text.replace(/\r\n/g, '\n'), 'utf8').digest('hex');
}

/** Read and check the migration files: numbered 1…N without gaps. */
export function loadMigrations(dir: URL | string = MIGRATIONS_DIR): Migration[] {
  const dirUrl = typeof dir === 'string' ? pathToFileURL(dir.endsWith('/') ? dir : `${dir}/`) : dir;
  const path = fileURLToPath(dirUrl);
  let names: string[];
  try {
    names = readdirSync(dirUrl).filter((n) => n.endsWith('.sql'));
  } catch (e) {
    throw bug(`cannot read the migrations folder ${path}`, e);
  }
  const migrations: Migration[] = [];
  for (const file of names) {
    const m = FILE_RE.exec(file);
    if (!m) throw bug(`${path}${file}: migration files must be named NNNN_name.sql`);
    const text = readFileSync(new URL(file, dirUrl), 'utf8');
    migrations.push({
      version: Number(m[1]),
      name: m[2]!,
      file,
      checksum: checksumOf(text),
      statements: splitStatements(text, file),
    });
  }
  migrations.sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw bug(`${path}: expected migration ${pad(i + 1)}, found ${m.file}`);
  });
  return migrations;
}

export type SchemaStatus =
  | { kind: 'uninitialized' }
  | { kind: 'current'; version: number }
  | { kind: 'behind'; version: number; pending: Migration[] };

/**
 * Compare what the control schema has applied with what this binary ships. Pure, so every
 * refusal can be tested without a server; throws the refusal, returns the rest.
 */
export function compareSchema(
  known: readonly Migration[],
  applied: readonly AppliedMigration[],
  database: string,
): SchemaStatus {
  if (applied.length === 0) return { kind: 'uninitialized' };
  const latestKnown = known.at(-1)?.version ?? 0;
  const newest = applied.reduce((a, b) => (b.version > a.version ? b : a));
  if (newest.version > latestKnown) {
    throw new PreconditionError(
      'E_CONTROL_TOO_NEW',
      `control schema '${database}' is at version ${newest.version} (${pad(newest.version)}_${newest.name}, applied by reshard ${newest.reshardVersion}); ` +
        `this reshard ${VERSION} knows versions up to ${latestKnown}: a newer reshard wrote it`,
      {
        where: database,
        hint: `upgrade reshard to ${newest.reshardVersion} or later; an older binary would misread the newer state, so it refuses`,
        data: { database, version: newest.version, known: latestKnown, appliedBy: newest.reshardVersion },
      },
    );
  }
  const byVersion = new Map(applied.map((a) => [a.version, a]));
  for (const m of known) {
    if (m.version > newest.version) break;
    const a = byVersion.get(m.version);
    if (!a) {
      throw new PreconditionError(
        'E_CONTROL_MIGRATION_MISSING',
        `control schema '${database}' records version ${newest.version} but not migration ${pad(m.version)}_${m.name}`,
        {
          where: `${database}.${VERSION_TABLE}`,
          hint: `the version table was edited by hand; restore its rows (or recreate the control schema with \`reshard init\` on a new database)`,
          data: { database, missing: m.version },
        },
      );
    }
    if (a.checksum !== m.checksum || a.name !== m.name) {
      throw new PreconditionError(
        'E_CONTROL_MIGRATION_CHANGED',
        `control schema '${database}': migration ${pad(m.version)} was applied as '${a.name}' with checksum ${a.checksum.slice(0, 12)}…, ` +
          `but this reshard ships '${m.file}' with checksum ${m.checksum.slice(0, 12)}…`,
        {
          where: `${database}.${VERSION_TABLE}`,
          hint: 'a released migration file was edited, or this control schema belongs to a different reshard build; use the reshard version that initialised it',
          data: { database, version: m.version, applied: a.checksum, shipped: m.checksum },
        },
      );
    }
  }
  const pending = known.filter((m) => m.version > newest.version);
  return pending.length
    ? { kind: 'behind', version: newest.version, pending }
    : { kind: 'current', version: newest.version };
}

/** Create or upgrade the control schema. Idempotent; safe to run concurrently. */
export async function ensureControlSchema(
  ctl: ControlConnection,
  opts: { migrations?: Migration[] } = {},
): Promise<MigrateResult> {
  const known = opts.migrations ?? loadMigrations();
  const { conn, database } = ctl;
  await conn.query(`CREATE DATABASE IF NOT EXISTS ${q(database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  await conn.query(`USE ${q(database)}`);
  const lock = lockName(database);
  const [got] = await conn.query('SELECT GET_LOCK(?, ?) AS got', [lock, LOCK_TIMEOUT_SECONDS]);
  if (String(first(got).got) !== '1') {
    throw new PreconditionError(
      'E_CONTROL_LOCKED',
      `another reshard is migrating control schema '${database}' (waited ${LOCK_TIMEOUT_SECONDS} s for lock ${lock})`,
      { where: database, hint: 'wait for the other `reshard init` to finish, then run it again' },
    );
  }
  try {
    await conn.query(
      `CREATE TABLE IF NOT EXISTS ${q(VERSION_TABLE)} (
        version          INT UNSIGNED NOT NULL,
        name             VARCHAR(191) NOT NULL,
        checksum         CHAR(64)     NOT NULL,
        applied_at       DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        reshard_version  VARCHAR(64)  NOT NULL,
        PRIMARY KEY (version)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
    );
    const status = compareSchema(known, await readApplied(conn), database);
    const pending = status.kind === 'uninitialized' ? known : status.kind === 'behind' ? status.pending : [];
    const applied: MigrateResult['applied'] = [];
    for (const m of pending) {
      for (const stmt of m.statements) {
        try {
          await conn.query(stmt);
        } catch (e) {
          throw new ReshardError(
            'bug',
            'E_CONTROL_MIGRATION_FAILED',
            `migration ${m.file} failed: ${(e as Error).message}`,
            {
              where: `${database}: ${m.file}`,
              hint: 'nothing after this statement was applied; `reshard init` re-runs the file. If the error persists, report it with the server version',
              cause: e,
            },
          );
        }
      }
      await conn.query(
        `INSERT INTO ${q(VERSION_TABLE)} (version, name, checksum, applied_at, reshard_version) VALUES (?, ?, ?, CURRENT_TIMESTAMP(6), ?)`,
        [m.version, m.name, m.checksum, VERSION],
      );
      applied.push({ version: m.version, name: m.name, checksum: m.checksum });
    }
    const version = pending.at(-1)?.version ?? (status.kind === 'uninitialized' ? 0 : status.version);
    return { database, version, applied };
  } finally {
    await conn.query('DO RELEASE_LOCK(?)', [lock]).catch(() => undefined);
  }
}

/**
 * For every command but `init`: refuse unless the control schema exists and is exactly at the
 * version this binary ships. Leaves the session's default database set to it.
 */
export async function checkControlSchema(
  ctl: ControlConnection,
  opts: { migrations?: Migration[] } = {},
): Promise<{ database: string; version: number }> {
  const known = opts.migrations ?? loadMigrations();
  const { conn, database } = ctl;
  const initHint = `run \`reshard init --control ${ctl.dsnForHint}\` first`;
  const [tables] = await conn.query(
    'SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
    [database, VERSION_TABLE],
  );
  const status = (tables as unknown[]).length
    ? compareSchema(known, await readApplied(conn, database), database)
    : ({ kind: 'uninitialized' } as const);
  if (status.kind === 'uninitialized') {
    throw new PreconditionError(
      'E_CONTROL_NOT_INITIALIZED',
      `control schema '${database}' is not initialised`,
      {
        where: database,
        hint: initHint,
      },
    );
  }
  if (status.kind === 'behind') {
    throw new PreconditionError(
      'E_CONTROL_OUTDATED',
      `control schema '${database}' is at version ${status.version}; this reshard needs version ${known.at(-1)?.version}`,
      { where: database, hint: `${initHint} to apply ${status.pending.map((m) => m.file).join(', ')}` },
    );
  }
  await conn.query(`USE ${q(database)}`);
  return { database, version: status.version };
}

async function readApplied(conn: Connection, database?: string): Promise<AppliedMigration[]> {
  const table = database ? `${q(database)}.${q(VERSION_TABLE)}` : q(VERSION_TABLE);
  const [rows] = await conn.query(
    `SELECT version, name, checksum, applied_at, reshard_version FROM ${table} ORDER BY version`,
  );
  return (rows as Record<string, unknown>[]).map((r) => ({
    version: Number(r.version),
    name: String(r.name),
    checksum: String(r.checksum),
    appliedAt: String(r.applied_at),
    reshardVersion: String(r.reshard_version),
  }));
}

/** GET_LOCK names are limited to 64 characters on MySQL; a database name alone may be 64. */
function lockName(database: string): string {
  return `reshard-init-${createHash('sha256').update(database).digest('hex').slice(0, 40)}`;
}

function first(rows: unknown): Record<string, unknown> {
  return ((rows as Record<string, unknown>[])[0] ?? {}) as Record<string, unknown>;
}

function pad(v: number): string {
  return String(v).padStart(4, '0');
}

function bug(message: string, cause?: unknown): ReshardError {
  return new ReshardError('bug', 'E_MIGRATIONS_BROKEN', message, {
    hint: 'the migrations shipped with this reshard are broken; reinstall it, and report this if it persists',
    ...(cause === undefined ? {} : { cause }),
  });
}
