import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type * as z from 'zod';
import { UsageError, ValidationError, type ValidationIssue } from '../errors.js';
import { allowedFields, normalizeTopology, SCHEME_TYPES, topologyFileSchema } from './schema.js';
import type { Topology } from './types.js';

/**
 * What a valid value of each field looks like, for the fix line of schema issues. Looked up by
 * `parent.field` first (both `shards` and `tables` have a `name`), then by `field`.
 */
const FIELD_FIX: Record<string, string> = {
  version: '1',
  name: 'a name for this topology',
  shards: 'a list of shards, each with name and dsn or host/port/database',
  tables: 'a list of tables, each with name and shardKey',
  groups: 'a list of { name, tables: [table names] }',
  scheme: 'a scheme mapping, e.g. { type: hash-mod, hash: crc32 }',
  'shards.name': 'a unique shard name of letters, digits, _ $ and -, e.g. s0',
  dsn: 'a DSN of the form mysql://user@host:3306/database',
  host: 'a host name or IP address, e.g. 127.0.0.1',
  port: 'a whole number from 1 to 65535 (default 3306)',
  socket: 'the path of the server Unix socket',
  database: 'the schema that holds the sharded tables on this shard',
  user: 'a MySQL user name (default root)',
  password: '{ env: VAR_NAME } or { file: /path/to/secret } (inline passwords are not accepted)',
  env: 'the name of an environment variable holding the password',
  'password.file': 'the path of a file holding the password',
  tls: 'a mapping { ca, cert, key, verifyIdentity }',
  ca: 'the path of a PEM CA bundle',
  cert: 'the path of a PEM client certificate',
  key: 'the path of the PEM private key of the client certificate',
  verifyIdentity: 'true or false (default true)',
  weight: 'a number greater than 0 (default 1)',
  'tables.name': 'the table name as it is on the server',
  shardKey: 'the column whose value routes the row',
  'groups.name': 'a unique group name',
  'groups.tables': 'a list of table names listed under tables',
  type: 'one of hash-mod, range, consistent-hash, directory',
  hash: "'crc32' or 'identity' for hash-mod, 'xxhash64' for consistent-hash",
  modulus: 'a whole number from 1 to 1000000 (default: the number of shards)',
  slots: 'a list of shard names, one per residue 0..modulus-1',
  ranges: 'a list of { shard, from, to } in key order',
  from: 'an integer, a quoted string, or null for unbounded',
  to: 'an integer, a quoted string, or null for unbounded',
  shard: 'the name of a shard listed under shards',
  vnodes: 'a whole number from 1 to 65536 (default 256)',
  seed: 'a whole number from 0 to 18446744073709551615 (default 0)',
  'scheme.file': 'the path of a key,shard CSV file, relative to the topology file',
  'scheme.table': 'a mapping { shard, name, keyColumn, shardColumn }',
  'table.name': 'the name of the directory table',
  default: 'the name of the shard that owns keys absent from the directory',
  keyColumn: 'the directory column holding the key',
  shardColumn: 'the directory column holding the shard name',
};

/** The field an issue is about, and a description of its valid values. */
function fieldFix(path: readonly PropertyKey[]): { field: string; fix: string | undefined } {
  const names = path.filter((p): p is string => typeof p === 'string');
  const field = names[names.length - 1] ?? '';
  const parent = names[names.length - 2];
  return {
    field,
    fix: (parent !== undefined ? FIELD_FIX[`${parent}.${field}`] : undefined) ?? FIELD_FIX[field],
  };
}

function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else s += s ? `.${String(p)}` : String(p);
  }
  return s;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate within a small edit distance (case-insensitive), if any. */
function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.min(3, Math.max(1, Math.floor(word.length / 3)) + 1);
  for (const c of candidates) {
    const dist = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return best;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'bigint' || typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'true/false';
  return `a ${typeof v}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  bigint: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

function getIn(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function zodIssues(file: string, err: z.ZodError, raw: unknown): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  // A misspelt required field shows up twice (unknown `shardkey`, missing `shardKey`); report it once.
  const renamed = new Set<string>();
  for (const i of err.issues) {
    if (i.code !== 'unrecognized_keys') continue;
    const allowed = allowedFields(i.path, raw);
    for (const k of i.keys) {
      const s = suggest(k, allowed);
      if (s) renamed.add(formatPath([...i.path, s]));
    }
  }
  for (const i of err.issues) {
    const path = formatPath(i.path);
    const { field, fix } = fieldFix(i.path);
    if (i.code === 'unrecognized_keys') {
      const allowed = allowedFields(i.path, raw);
      for (const k of i.keys) {
        const s = suggest(k, allowed);
        out.push({
          file,
          path: path ? `${path}.${k}` : k,
          message: 'is not a known field',
          hint: s
            ? `did you mean '${s}'? rename ${k} to ${s}`
            : `remove it${allowed.length > 0 ? `; the fields allowed here are ${allowed.join(', ')}` : ''}`,
        });
      }
      continue;
    }
    if (i.code === 'invalid_type' && i.input === undefined) {
      if (renamed.has(path)) continue;
      out.push({ file, path, message: 'is required but missing', hint: `add ${field}: ${fix ?? 'a value'}` });
      continue;
    }
    if (i.code === 'invalid_union' && field === 'type' && i.path[0] === 'scheme') {
      const value = getIn(raw, i.path);
      const s = typeof value === 'string' ? suggest(value, SCHEME_TYPES) : undefined;
      out.push({
        file,
        path,
        message:
          typeof value === 'string'
            ? `'${value}' is not a known scheme type`
            : `must be a string, not ${describe(value)}`,
        hint: `${s ? `did you mean '${s}'? ` : ''}set type to one of ${SCHEME_TYPES.join(', ')}`,
      });
      continue;
    }
    // The input is never echoed: it may be a secret.
    const message =
      i.code === 'invalid_type'
        ? `must be ${EXPECTED[i.expected] ?? i.expected}, not ${describe(i.input)}`
        : i.message;
    out.push({ file, path, message, hint: fix ? `set ${field} to ${fix}` : 'correct the value' });
  }
  return out;
}

/**
 * Append `:line` to each issue's file, from the nearest node on its path that exists in the YAML
 * document, and list issues in file order (stable, so rule order is kept within a line).
 */
function withLines(
  issues: ValidationIssue[],
  doc: ReturnType<typeof parseDocument>,
  lc: LineCounter,
): ValidationIssue[] {
  const lineOf = (i: ValidationIssue) => Number(/:(\d+)$/.exec(i.file)?.[1] ?? 0);
  return issues
    .map((i) => withLine(i, doc, lc))
    .map((i, n) => ({ i, n, line: lineOf(i) }))
    .sort((a, b) => a.line - b.line || a.n - b.n)
    .map(({ i }) => i);
}

function withLine(
  i: ValidationIssue,
  doc: ReturnType<typeof parseDocument>,
  lc: LineCounter,
): ValidationIssue {
  const keys = i.path
    .split(/\.|\[|\]/)
    .filter(Boolean)
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  for (let n = keys.length; n > 0; n--) {
    const node = doc.getIn(keys.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) {
      const { line } = lc.linePos(node.range[0]);
      return { ...i, file: `${i.file}:${line}` };
    }
  }
  return i;
}

/** Parse and validate topology text. `file` is used in messages and to resolve relative paths. */
export function parseTopology(text: string, file: string): Topology {
  const lc = new LineCounter();
  const doc = parseDocument(text, {
    intAsBigInt: true,
    lineCounter: lc,
    uniqueKeys: true,
    prettyErrors: false,
  });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((e) => {
      // linePos is only filled in with prettyErrors; the line counter knows it either way.
      const line = lc.linePos(e.pos[0]).line;
      return {
        file: line > 0 ? `${file}:${line}` : file,
        path: '',
        message: `YAML syntax error: ${e.message.split('\n')[0]}`,
        hint: 'fix the YAML syntax (indentation, colons, quotes)',
      };
    });
    throw new ValidationError('E_TOPOLOGY_YAML', file, issues);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new ValidationError('E_TOPOLOGY_YAML', file, [
      {
        file,
        path: '',
        message: `YAML error: ${(e as Error).message}`,
        hint: 'expand the aliases (*name) into plain values',
      },
    ]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValidationError('E_TOPOLOGY_INVALID', file, [
      {
        file,
        path: '',
        message: 'is not a mapping',
        hint: 'a topology file is a YAML mapping with version, shards, tables and scheme',
      },
    ]);
  }
  // reportInput tells a wrong-typed field (input present) from a missing one (input undefined).
  const parsed = topologyFileSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    throw new ValidationError(
      'E_TOPOLOGY_INVALID',
      file,
      withLines(zodIssues(file, parsed.error, raw), doc, lc),
    );
  }
  const issues: ValidationIssue[] = [];
  const topo = normalizeTopology(file, parsed.data, issues);
  if (!topo) throw new ValidationError('E_TOPOLOGY_INVALID', file, withLines(issues, doc, lc));
  if (topo.scheme.type === 'directory' && topo.scheme.source.kind === 'file') {
    const shardNames = topo.shards.map((s) => s.name);
    // Relative to the topology file, but kept relative to the cwd (as `file` is) for messages.
    const csv = isAbsolute(topo.scheme.source.path)
      ? topo.scheme.source.path
      : join(dirname(file), topo.scheme.source.path);
    topo.scheme.entries = loadDirectoryFile(csv, file, shardNames);
  }
  return topo;
}

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(
      'E_TOPOLOGY_READ',
      `cannot read topology file ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`,
      {
        where: file,
        hint: 'check the path passed to --from/--to/--topology',
        cause: e,
      },
    );
  }
  return parseTopology(text, file);
}

/**
 * Directory file: one `key,shard` per line (CSV, `#` comments allowed). Keys are taken in their
 * canonical string form exactly as written (no trimming inside the key beyond the line's ends).
 */
export function loadDirectoryFile(
  path: string,
  topologyFile: string,
  shardNames?: readonly string[],
): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(
      'E_DIRECTORY_READ',
      `cannot read directory file ${path} (scheme.file in ${topologyFile})`,
      {
        where: `${topologyFile}: scheme.file`,
        hint: 'the path is relative to the topology file',
        cause: e,
      },
    );
  }
  // A byte order mark (spreadsheets write one in "CSV UTF-8") is not part of the first key.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const entries = new Map<string, string>();
  const issues: ValidationIssue[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const comma = line.lastIndexOf(',');
    if (comma <= 0) {
      issues.push({
        file: `${path}:${i + 1}`,
        path: '',
        message: `'${line}' is not 'key,shard'`,
        hint: 'write one key,shard pair per line',
      });
      return;
    }
    const key = line.slice(0, comma);
    const shard = line.slice(comma + 1).trim();
    if (entries.has(key)) {
      issues.push({
        file: `${path}:${i + 1}`,
        path: '',
        message: `key '${key}' is listed twice`,
        hint: 'each key has one owner: delete one of the lines',
      });
      return;
    }
    if (shardNames && !shardNames.includes(shard)) {
      issues.push({
        file: `${path}:${i + 1}`,
        path: '',
        message: `key '${key}' maps to unknown shard '${shard}'`,
        hint: `use one of the shards of ${topologyFile}: ${shardNames.join(', ')}`,
      });
      return;
    }
    entries.set(key, shard);
  });
  if (issues.length > 0) throw new ValidationError('E_DIRECTORY_INVALID', path, issues);
  return entries;
}

/**
 * Throw if a directory names shards the topology does not define. Directory files are checked
 * while they are read (with line numbers); this is for entries read from a directory table.
 */
export function checkDirectoryShards(topo: Topology): void {
  if (topo.scheme.type !== 'directory' || !topo.scheme.entries) return;
  const names = new Set(topo.shards.map((s) => s.name));
  const issues: ValidationIssue[] = [];
  for (const [key, shard] of topo.scheme.entries) {
    if (!names.has(shard)) {
      issues.push({
        file: topo.file,
        path: 'scheme.directory',
        message: `key '${key}' maps to unknown shard '${shard}'`,
        hint: `use one of: ${[...names].join(', ')}`,
      });
      if (issues.length >= 20) break;
    }
  }
  if (issues.length > 0) throw new ValidationError('E_DIRECTORY_INVALID', topo.file, issues);
}

/**
 * Content hash of what routing depends on: shards (names, endpoints, weights), tables, groups
 * and scheme (including directory entries). Credentials and TLS paths are excluded, so rotating
 * a password reference does not invalidate a plan; moving a shard to another server does.
 */
export function topologyHash(topo: Topology): string {
  const canonical = {
    version: topo.version,
    shards: topo.shards.map((s) => ({
      name: s.name,
      host: s.endpoint.host,
      port: s.endpoint.port,
      socket: s.endpoint.socket ?? null,
      database: s.endpoint.database,
      weight: s.weight,
    })),
    tables: topo.tables.map((t) => ({ name: t.name, shardKey: t.shardKey })),
    groups: topo.groups.map((g) => ({ name: g.name, tables: g.tables.map((t) => t.name) })),
    scheme:
      topo.scheme.type === 'directory'
        ? {
            ...topo.scheme,
            entries: topo.scheme.entries
              ? [...topo.scheme.entries.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
              : null,
          }
        : topo.scheme,
  };
  return createHash('sha256').update(canonicalJson(canonical)).digest('hex');
}

/** Deterministic JSON: sorted object keys, bigints as `"123n"`-free decimal strings tagged by type. */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return JSON.stringify({ $int: value.toString() });
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Map) return canonicalJson([...value.entries()]);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new Error(`canonicalJson: unsupported ${typeof value}`);
}
