/**
 * Topology file schema, in three passes (as the config loaders we model ours on do):
 *   1. shape: zod checks types and field names (strict objects, so a typo is an error);
 *   2. normalization: defaults filled in, DSNs split into endpoints, ints made bigint;
 *   3. cross-field rules: duplicates, unknown references, range gaps/overlaps — all collected
 *      and reported together, each with its field path and a fix.
 */
import * as z from 'zod';
import { isPasswordParam } from '../db/dsn.js';
import type { ValidationIssue } from '../errors.js';
import { thousands } from '../util/format.js';
import type {
  RangeSpec,
  Scheme,
  SecretRef,
  Shard,
  ShardEndpoint,
  TableGroup,
  TableSpec,
  TlsOptions,
  Topology,
} from './types.js';

const IDENT = /^[A-Za-z0-9_][A-Za-z0-9_$-]*$/;

const U64_MAX = 18_446_744_073_709_551_615n;

/**
 * YAML is parsed with intAsBigInt so range boundaries stay exact: every integer arrives as a
 * bigint, every non-integer as a number. Small ints are converted back to numbers here.
 */
const smallInt = (min: number, max: number) =>
  z
    .union([z.number(), z.bigint()], { error: `must be a whole number from ${min} to ${max}` })
    .transform((v, ctx) => {
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}, got ${v}` });
        return z.NEVER;
      }
      return n;
    });

/** A positive number; `weight: 2` arrives as a bigint (see smallInt), `weight: 1.5` as a number. */
const positiveNumber = z
  .union([z.number(), z.bigint()], { error: 'must be a number greater than 0' })
  .transform((v, ctx) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) {
      ctx.addIssue({ code: 'custom', message: `must be a number greater than 0, got ${v}` });
      return z.NEVER;
    }
    return n;
  });

const u64 = z
  .union([z.bigint(), z.number()], { error: 'must be a whole number from 0 to 18446744073709551615' })
  .transform((v, ctx) => {
    if (typeof v === 'number' && !Number.isInteger(v)) {
      ctx.addIssue({ code: 'custom', message: `must be a whole number, got ${v}` });
      return z.NEVER;
    }
    const b = BigInt(v);
    if (b < 0n || b > U64_MAX) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a whole number from 0 to 18446744073709551615, got ${b}`,
      });
      return z.NEVER;
    }
    return b;
  });

const nonEmpty = z.string({ error: 'must be a string' }).min(1, 'is empty');

// The message never echoes the value: it may be the password itself.
const secretRef = z.union([z.strictObject({ env: nonEmpty }), z.strictObject({ file: nonEmpty })], {
  error: (iss) =>
    typeof iss.input === 'string' || typeof iss.input === 'number' || typeof iss.input === 'bigint'
      ? 'is an inline password; only a reference to a secret is accepted'
      : 'must be exactly one of { env: VAR_NAME } or { file: /path/to/secret }',
});

const tls = z.strictObject({
  ca: nonEmpty.optional(),
  cert: nonEmpty.optional(),
  key: nonEmpty.optional(),
  verifyIdentity: z.boolean().optional(),
});

const shard = z.strictObject({
  name: nonEmpty.regex(IDENT, 'may hold only letters, digits, _ $ and - (and not start with $ or -)'),
  dsn: nonEmpty.optional(),
  host: nonEmpty.optional(),
  port: smallInt(1, 65535).optional(),
  socket: nonEmpty.optional(),
  database: nonEmpty.optional(),
  user: nonEmpty.optional(),
  password: secretRef.optional(),
  tls: tls.optional(),
  weight: positiveNumber.optional(),
});

const table = z.strictObject({
  name: nonEmpty,
  shardKey: nonEmpty,
});

const group = z.strictObject({
  name: nonEmpty,
  tables: z.array(nonEmpty).min(1, 'is empty; a group needs at least one table'),
});

const boundary = z.union([z.bigint(), z.number().int(), z.string(), z.null()], {
  error: 'must be an integer, a string or null (unbounded)',
});

const hashMod = z.strictObject({
  type: z.literal('hash-mod'),
  hash: z.enum(['identity', 'crc32'], { error: "must be 'crc32' or 'identity' (integer keys only)" }),
  modulus: smallInt(1, 1_000_000).optional(),
  slots: z.array(nonEmpty).min(1, 'is empty').optional(),
});

const range = z.strictObject({
  type: z.literal('range'),
  ranges: z
    .array(
      z.strictObject({
        shard: nonEmpty,
        from: boundary.optional(),
        to: boundary.optional(),
      }),
    )
    .min(1, 'is empty; a range scheme needs at least one range'),
});

const consistent = z.strictObject({
  type: z.literal('consistent-hash'),
  hash: z.literal('xxhash64', { error: "must be 'xxhash64'" }).optional(),
  vnodes: smallInt(1, 65_536).optional(),
  seed: u64.optional(),
});

const directory = z.strictObject({
  type: z.literal('directory'),
  file: nonEmpty.optional(),
  table: z
    .strictObject({
      shard: nonEmpty,
      name: nonEmpty,
      keyColumn: nonEmpty,
      shardColumn: nonEmpty,
    })
    .optional(),
  default: nonEmpty.optional(),
});

export const SCHEME_TYPES = ['hash-mod', 'range', 'consistent-hash', 'directory'] as const;

const scheme = z.discriminatedUnion('type', [hashMod, range, consistent, directory], {
  error: `is not a known scheme type`,
});

export const topologyFileSchema = z.strictObject({
  version: z.union([z.number(), z.bigint()], { error: 'must be 1' }).transform((v, ctx) => {
    if (Number(v) !== 1) {
      ctx.addIssue({ code: 'custom', message: `is ${v}, but this version of reshard reads version 1 files` });
      return z.NEVER;
    }
    return 1 as const;
  }),
  name: nonEmpty.optional(),
  shards: z.array(shard),
  tables: z.array(table).min(1, 'is empty; list every sharded table'),
  groups: z.array(group).optional(),
  scheme,
});

/**
 * Field names allowed in the object at `path` (a parsed-YAML path), for did-you-mean hints on
 * unknown fields. `raw` is the parsed document, needed to pick the scheme variant.
 */
export function allowedFields(path: readonly PropertyKey[], raw: unknown): string[] {
  const p = path.map((k) => (typeof k === 'number' ? '#' : String(k))).join('.');
  switch (p) {
    case '':
      return Object.keys(topologyFileSchema.shape);
    case 'shards.#':
      return Object.keys(shard.shape);
    case 'shards.#.tls':
      return Object.keys(tls.shape);
    case 'tables.#':
      return Object.keys(table.shape);
    case 'groups.#':
      return Object.keys(group.shape);
    case 'scheme.ranges.#':
      return ['shard', 'from', 'to'];
    case 'scheme.table':
      return ['shard', 'name', 'keyColumn', 'shardColumn'];
    case 'scheme': {
      const type = (raw as { scheme?: { type?: unknown } } | null)?.scheme?.type;
      const variant = [hashMod, range, consistent, directory].find((v) => v.shape.type.value === type);
      return variant ? Object.keys(variant.shape) : ['type'];
    }
    default:
      return [];
  }
}

export type TopologyFile = z.infer<typeof topologyFileSchema>;

const DEFAULT_PORT = 3306;
const DEFAULT_VNODES = 256;
/** Points of a consistent-hash ring, over all shards (vnodes × weight each). */
const MAX_RING_POINTS = 1 << 22;

interface Ctx {
  file: string;
  issues: ValidationIssue[];
}

function issue(ctx: Ctx, path: string, message: string, hint?: string): void {
  ctx.issues.push({ file: ctx.file, path, message, ...(hint ? { hint } : {}) });
}

/**
 * Parse a mysql://user@host:port/db?socket=… DSN. Passwords in DSNs are rejected: they end up in
 * argv, logs and state files. Other query parameters are rejected too rather than ignored, so a
 * setting the user believes is in force (TLS, say) cannot silently be dropped.
 */
function endpointFromDsn(ctx: Ctx, path: string, dsn: string): Partial<ShardEndpoint> | undefined {
  let url: URL;
  try {
    url = new URL(dsn);
  } catch {
    issue(ctx, path, 'is not a valid DSN', 'use the form mysql://user@host:3306/database');
    return undefined;
  }
  if (!/^(mysql|mariadb):$/.test(url.protocol)) {
    issue(
      ctx,
      path,
      `uses unsupported scheme '${url.protocol.replace(':', '')}'`,
      'start the DSN with mysql:// or mariadb://',
    );
    return undefined;
  }
  const passwordHint =
    'remove it from the DSN and add `password: { env: VAR }` or `password: { file: path }` to the shard';
  if (url.password) {
    issue(ctx, path, 'contains a password', passwordHint);
    return undefined;
  }
  for (const key of url.searchParams.keys()) {
    if (isPasswordParam(key)) {
      issue(ctx, path, `contains a password (query parameter '${key}')`, passwordHint);
      return undefined;
    }
    if (key !== 'socket') {
      issue(
        ctx,
        path,
        `has unsupported query parameter '${key}'`,
        "only ?socket=/path is read from a DSN; set TLS in the shard's `tls:` block and credentials in `password:`",
      );
      return undefined;
    }
  }
  const socket = url.searchParams.get('socket') ?? undefined;
  // WHATWG URL keeps the brackets of an IPv6 literal; the driver wants the bare address.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host && !socket) {
    issue(
      ctx,
      path,
      'names no host',
      'use the form mysql://user@host:3306/database (or add ?socket=/path/to/mysqld.sock)',
    );
    return undefined;
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) {
    issue(ctx, path, 'names no database', 'end the DSN with /database, e.g. mysql://user@host:3306/shop');
    return undefined;
  }
  const port = url.port ? Number(url.port) : DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    issue(
      ctx,
      path,
      `has port ${url.port}, not 1–65535`,
      'write the server port, e.g. mysql://user@host:3306/shop',
    );
    return undefined;
  }
  return {
    ...(host ? { host } : {}),
    port,
    database,
    ...(url.username ? { user: decodeURIComponent(url.username) } : {}),
    ...(socket ? { socket } : {}),
  };
}

function normalizeShard(ctx: Ctx, i: number, s: TopologyFile['shards'][number]): Shard | undefined {
  const path = `shards[${i}]`;
  let ep: Partial<ShardEndpoint>;
  if (s.dsn !== undefined) {
    const both = (['host', 'port', 'database'] as const).filter((k) => s[k] !== undefined);
    if (both.length > 0) {
      issue(
        ctx,
        path,
        `sets both dsn and ${both.join('/')}`,
        `remove ${both.join(', ')} (the DSN already says where the shard is), or remove dsn`,
      );
      return undefined;
    }
    const fromDsn = endpointFromDsn(ctx, `${path}.dsn`, s.dsn);
    // The DSN issue already says what is wrong; "database is missing" on top would be noise.
    if (!fromDsn) return undefined;
    ep = fromDsn;
    if (s.user !== undefined && ep.user !== undefined && s.user !== ep.user) {
      issue(
        ctx,
        `${path}.user`,
        `is '${s.user}' but the DSN names user '${ep.user}'`,
        'name the user in one place only',
      );
    }
  } else {
    if (s.host === undefined && s.socket === undefined) {
      issue(
        ctx,
        path,
        'has neither dsn nor host',
        'add `host: 127.0.0.1` (and port, database) or `dsn: mysql://user@host:port/db`',
      );
    }
    ep = {
      ...(s.host ? { host: s.host } : {}),
      port: s.port ?? DEFAULT_PORT,
      ...(s.database ? { database: s.database } : {}),
    };
    if (!ep.database) {
      issue(
        ctx,
        `${path}.database`,
        'is missing',
        'add `database: <schema>`: the schema that holds the sharded tables on this shard',
      );
    }
  }
  if (s.socket) ep.socket = s.socket;
  if (s.user) ep.user = s.user;
  let tlsOpts: TlsOptions | undefined;
  if (s.tls) {
    if ((s.tls.cert === undefined) !== (s.tls.key === undefined)) {
      issue(
        ctx,
        `${path}.tls`,
        'sets only one of cert and key',
        'a client certificate needs both cert and key; set both or neither',
      );
    }
    tlsOpts = { ...s.tls, verifyIdentity: s.tls.verifyIdentity ?? true };
  }
  if ((!ep.host && !ep.socket) || !ep.database) return undefined;
  const endpoint: ShardEndpoint = {
    host: ep.host ?? 'localhost',
    port: ep.port ?? DEFAULT_PORT,
    database: ep.database,
    user: ep.user ?? 'root',
    ...(ep.socket ? { socket: ep.socket } : {}),
    ...(s.password ? { password: s.password as SecretRef } : {}),
    ...(tlsOpts ? { tls: tlsOpts } : {}),
  };
  return { name: s.name, endpoint, weight: s.weight ?? 1 };
}

function toBoundary(v: bigint | number | string | null | undefined): bigint | string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return BigInt(v);
  return v;
}

function compareBoundary(a: bigint | string, b: bigint | string): number {
  if (typeof a === 'bigint' && typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
  // Strings compare as their UTF-8 bytes: the order of a binary collation, and of keyset pagination.
  return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
}

function fmt(b: bigint | string | null): string {
  return b === null ? 'unbounded' : typeof b === 'string' ? JSON.stringify(b) : b.toString();
}

function normalizeRanges(ctx: Ctx, ranges: { shard: string; from?: unknown; to?: unknown }[]): RangeSpec[] {
  const specs: RangeSpec[] = ranges.map((r) => ({
    shard: r.shard,
    from: toBoundary(r.from as bigint | number | string | null | undefined),
    to: toBoundary(r.to as bigint | number | string | null | undefined),
  }));
  const bounds = specs.flatMap((r, i) => [
    { at: `[${i}].from`, b: r.from },
    { at: `[${i}].to`, b: r.to },
  ]);
  const firstInt = bounds.find((x) => typeof x.b === 'bigint');
  const firstString = bounds.find((x) => typeof x.b === 'string');
  if (firstInt && firstString) {
    issue(
      ctx,
      'scheme.ranges',
      `mixes integer and string boundaries (ranges${firstInt.at} is an integer, ranges${firstString.at} is a string)`,
      'for an integer key write every boundary as a plain integer (no quotes, no _ separators); for a string key quote every boundary',
    );
    return specs;
  }
  specs.forEach((r, i) => {
    if (r.from !== null && r.to !== null && compareBoundary(r.from, r.to) >= 0) {
      issue(
        ctx,
        `scheme.ranges[${i}]`,
        `is empty: from ${fmt(r.from)} is not below to ${fmt(r.to)}`,
        'ranges are [from, to): from must be smaller than to',
      );
    }
  });
  // Ranges must be listed in key order; check coverage pairwise so every gap and overlap is reported.
  specs.forEach((r, i) => {
    if (i === 0) {
      if (r.from !== null) {
        issue(
          ctx,
          `scheme.ranges[0].from`,
          `leaves keys below ${fmt(r.from)} without an owner`,
          'omit `from` (or set it to null) on the first range',
        );
      }
      return;
    }
    const prev = specs[i - 1]!;
    if (prev.to === null) {
      issue(
        ctx,
        `scheme.ranges[${i - 1}].to`,
        'is unbounded but another range follows',
        'give every range but the last a `to`',
      );
    } else if (r.from === null) {
      issue(
        ctx,
        `scheme.ranges[${i}].from`,
        'is unbounded but this is not the first range',
        `set from: ${fmt(prev.to)}`,
      );
    } else {
      const c = compareBoundary(prev.to, r.from);
      if (c < 0) {
        issue(
          ctx,
          `scheme.ranges[${i}].from`,
          `leaves a gap: keys from ${fmt(prev.to)} up to ${fmt(r.from)} have no owner`,
          `set from: ${fmt(prev.to)} (ranges are [from, to) and must touch)`,
        );
      } else if (c > 0) {
        issue(
          ctx,
          `scheme.ranges[${i}].from`,
          `overlaps scheme.ranges[${i - 1}]: keys from ${fmt(r.from)} up to ${fmt(prev.to)} have two owners`,
          `set from: ${fmt(prev.to)}, or list ranges in key order`,
        );
      }
    }
  });
  const last = specs[specs.length - 1];
  if (last && last.to !== null) {
    issue(
      ctx,
      `scheme.ranges[${specs.length - 1}].to`,
      `leaves keys from ${fmt(last.to)} up without an owner`,
      'omit `to` (or set it to null) on the last range',
    );
  }
  return specs;
}

/** Passes 2 and 3. Returns the topology, or undefined with issues recorded. */
/**
 * Which server and database a shard endpoint names, as one string: host names compare without
 * case and without a trailing dot (DNS), database names exactly (case-sensitive on Linux
 * servers), a socket path exactly. Used wherever two shards must not be one database.
 */
export function endpointIdentity(ep: {
  socket?: string | undefined;
  host: string;
  port: number;
  database: string;
}): string {
  return `${ep.socket ?? `${ep.host.toLowerCase().replace(/\.$/, '')}:${ep.port}`}/${ep.database}`;
}

export function normalizeTopology(
  file: string,
  raw: TopologyFile,
  issues: ValidationIssue[],
): Topology | undefined {
  const ctx: Ctx = { file, issues };
  if (raw.shards.length === 0) {
    issue(ctx, 'shards', 'is empty', 'list at least one shard');
  }
  const shards: Shard[] = [];
  const seen = new Map<string, number>();
  // Keyed by the shard's index in the file, so messages name the right entry even when an
  // earlier shard failed to normalize.
  const endpoints = new Map<string, number>();
  raw.shards.forEach((s, i) => {
    const prev = seen.get(s.name);
    if (prev !== undefined) {
      issue(
        ctx,
        `shards[${i}].name`,
        `duplicates shards[${prev}].name '${s.name}'`,
        'give every shard a unique name',
      );
    } else {
      seen.set(s.name, i);
    }
    const n = normalizeShard(ctx, i, s);
    if (!n) return;
    shards.push(n);
    const ep = n.endpoint;
    const key = endpointIdentity(ep);
    const other = endpoints.get(key);
    if (other !== undefined) {
      issue(
        ctx,
        `shards[${i}]`,
        `points at the same server and database as shards[${other}] (${key})`,
        'each shard must be its own server+database pair: change the port, host or database of one of them',
      );
    } else endpoints.set(key, i);
  });
  const shardNames = new Set(raw.shards.map((s) => s.name));
  const knownShard = (path: string, name: string) => {
    if (!shardNames.has(name)) {
      issue(
        ctx,
        path,
        `names unknown shard '${name}'`,
        `use one of: ${[...shardNames].join(', ') || '(no shards defined)'}`,
      );
    }
  };

  const tables: TableSpec[] = [];
  const tableIdx = new Map<string, number>();
  raw.tables.forEach((t, i) => {
    const prev = tableIdx.get(t.name);
    if (prev !== undefined) {
      issue(ctx, `tables[${i}].name`, `duplicates tables[${prev}].name '${t.name}'`, 'list each table once');
    } else tableIdx.set(t.name, i);
    tables.push({ name: t.name, shardKey: t.shardKey });
  });

  const groups: TableGroup[] = [];
  const grouped = new Map<string, string>();
  const groupNames = new Set<string>();
  (raw.groups ?? []).forEach((g, gi) => {
    if (groupNames.has(g.name))
      issue(ctx, `groups[${gi}].name`, `duplicates group '${g.name}'`, 'give every group a unique name');
    groupNames.add(g.name);
    const members: TableSpec[] = [];
    g.tables.forEach((tn, ti) => {
      const idx = tableIdx.get(tn);
      if (idx === undefined) {
        issue(
          ctx,
          `groups[${gi}].tables[${ti}]`,
          `names unknown table '${tn}'`,
          `add it under tables (with its shardKey) or remove it from the group; known tables: ${[...tableIdx.keys()].join(', ')}`,
        );
        return;
      }
      const other = grouped.get(tn);
      if (other !== undefined) {
        issue(
          ctx,
          `groups[${gi}].tables[${ti}]`,
          `puts table '${tn}' in a second group (it is already in '${other}')`,
          `a table belongs to one group: remove '${tn}' from '${g.name}' or from '${other}'`,
        );
        return;
      }
      grouped.set(tn, g.name);
      members.push(tables[idx]!);
    });
    groups.push({ name: g.name, tables: members });
  });
  // Ungrouped tables move on their own: each is a group of one, named after the table. A listed
  // group with that name would make the two indistinguishable (and the table was once dropped).
  for (const t of tables) {
    if (grouped.has(t.name)) continue;
    const gi = (raw.groups ?? []).findIndex((g) => g.name === t.name);
    if (gi >= 0) {
      issue(
        ctx,
        `groups[${gi}].name`,
        `is also the name of table '${t.name}', which is in no group (an ungrouped table forms a group named after itself)`,
        `rename the group, or add '${t.name}' to its tables`,
      );
      continue;
    }
    groups.push({ name: t.name, tables: [t] });
  }

  let scheme: Scheme | undefined;
  const rs = raw.scheme;
  switch (rs.type) {
    case 'hash-mod': {
      // Default: residue r belongs to the r-th shard in file order.
      const slots = rs.slots ?? raw.shards.map((s) => s.name);
      const modulus = rs.modulus ?? slots.length;
      if (rs.slots === undefined && rs.modulus !== undefined && rs.modulus !== raw.shards.length) {
        issue(
          ctx,
          'scheme.modulus',
          `is ${rs.modulus} but there are ${raw.shards.length} shards and no slots`,
          `set modulus: ${raw.shards.length}, or list slots (one shard name per residue 0..${rs.modulus - 1})`,
        );
      }
      if (rs.slots !== undefined && slots.length !== modulus) {
        issue(
          ctx,
          'scheme.slots',
          `has ${slots.length} entries but modulus is ${modulus}`,
          'list exactly one shard per residue 0..modulus-1',
        );
      }
      slots.forEach((s, i) => {
        knownShard(`scheme.slots[${i}]`, s);
      });
      const owning = new Set(slots);
      raw.shards.forEach((s, i) => {
        if (rs.slots !== undefined && !owning.has(s.name)) {
          issue(
            ctx,
            `shards[${i}]`,
            `'${s.name}' owns no slot, so it would hold no keys`,
            'add it to scheme.slots or remove the shard',
          );
        }
      });
      scheme = { type: 'hash-mod', hash: rs.hash, modulus, slots };
      break;
    }
    case 'range': {
      rs.ranges.forEach((r, i) => {
        knownShard(`scheme.ranges[${i}].shard`, r.shard);
      });
      const owning = new Set(rs.ranges.map((r) => r.shard));
      raw.shards.forEach((s, i) => {
        if (!owning.has(s.name)) {
          issue(
            ctx,
            `shards[${i}]`,
            `'${s.name}' owns no range, so it would hold no keys`,
            'add a range for it under scheme.ranges or remove the shard',
          );
        }
      });
      const ranges = normalizeRanges(ctx, rs.ranges);
      const keyType = ranges.some((r) => typeof r.from === 'string' || typeof r.to === 'string')
        ? 'string'
        : 'int';
      scheme = { type: 'range', keyType, ranges };
      break;
    }
    case 'consistent-hash': {
      const vnodes = rs.vnodes ?? DEFAULT_VNODES;
      scheme = { type: 'consistent-hash', hash: 'xxhash64', vnodes, seed: BigInt(rs.seed ?? 0) };
      // Every point of the ring takes 12 bytes in every command that routes: bound their number
      // here, where the file and field can be named (an absurd weight used to crash the planner).
      const points = raw.shards.map((s) => Math.max(1, Math.floor(vnodes * Number(s.weight ?? 1) + 0.5)));
      const total = points.reduce((x, y) => x + y, 0);
      if (total > MAX_RING_POINTS) {
        const worst = points.indexOf(Math.max(...points));
        issue(
          ctx,
          `shards[${worst}].weight`,
          `makes the ring ${thousands(total)} points (scheme.vnodes ${vnodes} × each shard's weight, summed); at most ${thousands(MAX_RING_POINTS)}`,
          'weights are relative: scale them down (1 for the smallest shard), or lower scheme.vnodes',
        );
      }
      break;
    }
    case 'directory': {
      if (rs.file !== undefined && rs.table !== undefined) {
        issue(
          ctx,
          'scheme',
          'sets both file and table; a directory has one source',
          'remove either `file:` or `table:`',
        );
      } else if (rs.file === undefined && rs.table === undefined) {
        issue(
          ctx,
          'scheme',
          'sets neither file nor table; a directory scheme needs one source',
          'add `file: keys.csv` (one key,shard per line) or `table: { shard, name, keyColumn, shardColumn }`',
        );
      }
      if (rs.default !== undefined) knownShard('scheme.default', rs.default);
      if (rs.table) knownShard('scheme.table.shard', rs.table.shard);
      const source =
        rs.file !== undefined
          ? { kind: 'file' as const, path: rs.file }
          : {
              kind: 'table' as const,
              shard: rs.table?.shard ?? '',
              table: rs.table?.name ?? '',
              keyColumn: rs.table?.keyColumn ?? '',
              shardColumn: rs.table?.shardColumn ?? '',
            };
      scheme = { type: 'directory', source, ...(rs.default !== undefined ? { default: rs.default } : {}) };
      break;
    }
  }
  // hash-mod `identity` hashes integer keys only; column types are checked against the server in preflight.

  if (ctx.issues.length > 0 || !scheme) return undefined;
  return {
    version: 1,
    file,
    name: raw.name ?? file,
    shards,
    tables,
    groups,
    scheme,
  };
}
