/**
 * The routing document: what `reshard_routing_versions.routing` holds, and what applications and
 * `reshard route` route by. One format, written by cutover/rollback and read by everyone else.
 *
 *   {
 *     "format": 1,
 *     "job": "plan-0123abcd…" | null,      // job that wrote it (null: recorded before any job)
 *     "writes": RoutingRule,               // where writes (and, unless `reads` differs, reads) go
 *     "reads":  RoutingRule                // differs from writes during a reads-first cutover
 *   }
 *   RoutingRule = { "topology": RoutingTopology,
 *                   "canary"?: { "next": RoutingTopology, "flipped": [{ "from": s, "to": t }] } }
 *
 * A key's owner under a rule is its owner under `topology`, except in a segment canary: when the
 * pair (owner under `topology`, owner under `canary.next`) is one of `flipped`, the owner under
 * `next`. So "flip segments (s0 → s4) and (s1 → s5) first" is one document, and the full flip is
 * simply `{ topology: next }` with no canary.
 *
 * RoutingTopology is the routing part of a topology, JSON-safe and secret-free: shard names with
 * host/port/socket/database (no user, password or TLS), the tables, and the scheme with bigints
 * as decimal strings (range boundaries of an int range, the consistent-hash seed) and a
 * directory's entries embedded as sorted [key, shard] pairs (so a reader needs no file or table).
 *
 * Writers: build with `routingFromTopology` (or by hand), store `serializeRouting(doc)` in
 * `routing` and `routingHash(doc)` in `routing_hash` — `recordRoutingVersion` does exactly that,
 * inside the caller's transaction. Readers: `parseRouting(text)` validates (a document of another
 * format is refused, not misread), `createRoutingRouter(doc)` routes, `readActiveRouting(conn)`
 * reads the active row.
 */
import { createHash } from 'node:crypto';
import type { Connection } from 'mysql2/promise';
import * as z from 'zod';
import { PreconditionError, ReshardError } from '../errors.js';
import { createRouter, type RouteKey, type Router } from '../plan/router.js';
import { canonicalJson, topologyHash } from '../topology/load.js';
import type { Scheme, Topology } from '../topology/types.js';

export const ROUTING_FORMAT = 1;

export interface RoutingShard {
  name: string;
  host: string;
  port: number;
  socket?: string;
  database: string;
  /** Consistent-hash weight (1 unless the topology says otherwise). */
  weight: number;
}

export type RoutingScheme =
  | { type: 'hash-mod'; hash: 'identity' | 'crc32'; modulus: number; slots: string[] }
  | {
      type: 'range';
      keyType: 'int' | 'string';
      /** Boundaries of an int range are decimal strings (exact beyond 2^53). */
      ranges: { shard: string; from: string | null; to: string | null }[];
    }
  | { type: 'consistent-hash'; hash: 'xxhash64'; vnodes: number; seed: string }
  | {
      type: 'directory';
      default?: string;
      /** [canonical key string, shard], sorted by key. */
      entries: [string, string][];
    };

export interface RoutingTopology {
  name: string;
  /** topologyHash() of the topology it was made from: informational, for operators. */
  topologyHash: string;
  shards: RoutingShard[];
  tables: { name: string; shardKey: string }[];
  scheme: RoutingScheme;
}

export interface RoutingRule {
  topology: RoutingTopology;
  canary?: { next: RoutingTopology; flipped: { from: string; to: string }[] };
}

export interface RoutingDocument {
  format: typeof ROUTING_FORMAT;
  job: string | null;
  writes: RoutingRule;
  reads: RoutingRule;
}

// ---------------------------------------------------------------------------------------------
// Building

export function routingTopologyOf(topology: Topology): RoutingTopology {
  return {
    name: topology.name,
    topologyHash: topologyHash(topology),
    shards: topology.shards.map((s) => ({
      name: s.name,
      host: s.endpoint.host,
      port: s.endpoint.port,
      ...(s.endpoint.socket ? { socket: s.endpoint.socket } : {}),
      database: s.endpoint.database,
      weight: s.weight,
    })),
    tables: topology.tables.map((t) => ({ name: t.name, shardKey: t.shardKey })),
    scheme: schemeDoc(topology.scheme, topology.file),
  };
}

function schemeDoc(s: Scheme, file: string): RoutingScheme {
  switch (s.type) {
    case 'hash-mod':
      return { type: 'hash-mod', hash: s.hash, modulus: s.modulus, slots: [...s.slots] };
    case 'range':
      return {
        type: 'range',
        keyType: s.keyType,
        ranges: s.ranges.map((r) => ({
          shard: r.shard,
          from: r.from === null ? null : String(r.from),
          to: r.to === null ? null : String(r.to),
        })),
      };
    case 'consistent-hash':
      return { type: 'consistent-hash', hash: s.hash, vnodes: s.vnodes, seed: s.seed.toString() };
    case 'directory': {
      if (!s.entries) {
        throw new ReshardError('bug', 'E_BUG', `routing of ${file}: the directory has not been read`);
      }
      const entries = [...s.entries.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      return { type: 'directory', ...(s.default !== undefined ? { default: s.default } : {}), entries };
    }
  }
}

/** A document routing reads and writes by one topology (the initial routing, or a full flip). */
export function routingFromTopology(topology: Topology, job: string | null = null): RoutingDocument {
  const rule: RoutingRule = { topology: routingTopologyOf(topology) };
  return { format: ROUTING_FORMAT, job, writes: rule, reads: rule };
}

/** Canonical text stored in `reshard_routing_versions.routing` (sorted keys: hash-stable). */
export function serializeRouting(doc: RoutingDocument): string {
  return canonicalJson(doc);
}

/** sha256 hex of the canonical text: `reshard_routing_versions.routing_hash`. */
export function routingHash(doc: RoutingDocument): string {
  return createHash('sha256').update(serializeRouting(doc)).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Parsing

const name = z.string().min(1);
const topologySchema = z.strictObject({
  name: z.string(),
  topologyHash: z.string(),
  shards: z
    .array(
      z.strictObject({
        name,
        host: z.string(),
        port: z.number().int(),
        socket: z.string().optional(),
        database: z.string(),
        weight: z.number().positive(),
      }),
    )
    .min(1),
  tables: z.array(z.strictObject({ name, shardKey: name })),
  scheme: z.discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('hash-mod'),
      hash: z.enum(['identity', 'crc32']),
      modulus: z.number().int().positive(),
      slots: z.array(name),
    }),
    z.strictObject({
      type: z.literal('range'),
      keyType: z.enum(['int', 'string']),
      ranges: z
        .array(z.strictObject({ shard: name, from: z.string().nullable(), to: z.string().nullable() }))
        .min(1),
    }),
    z.strictObject({
      type: z.literal('consistent-hash'),
      hash: z.literal('xxhash64'),
      vnodes: z.number().int().positive(),
      seed: z.string().regex(/^\d+$/),
    }),
    z.strictObject({
      type: z.literal('directory'),
      default: name.optional(),
      entries: z.array(z.tuple([z.string(), name])),
    }),
  ]),
});
const ruleSchema = z.strictObject({
  topology: topologySchema,
  canary: z
    .strictObject({ next: topologySchema, flipped: z.array(z.strictObject({ from: name, to: name })) })
    .optional(),
});
const documentSchema = z.strictObject({
  format: z.literal(ROUTING_FORMAT),
  job: z.string().nullable(),
  writes: ruleSchema,
  reads: ruleSchema,
});

/**
 * Parse and validate a stored routing document. Refuses (E_ROUTING_FORMAT) a document of another
 * format — a newer reshard wrote it — and (E_ROUTING_INVALID) anything malformed.
 */
export function parseRouting(text: string, where = 'routing document'): RoutingDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PreconditionError('E_ROUTING_INVALID', `${where} is not JSON: ${(e as Error).message}`, {
      where,
      cause: e,
    });
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (format !== ROUTING_FORMAT) {
    throw new PreconditionError(
      'E_ROUTING_FORMAT',
      `${where} has routing format ${JSON.stringify(format)}; this reshard reads format ${ROUTING_FORMAT}`,
      { where, hint: 'use the reshard version that wrote this routing version (or a newer one)' },
    );
  }
  const parsed = documentSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new PreconditionError(
      'E_ROUTING_INVALID',
      `${where} is not a valid routing document: ${first ? `${first.path.join('.') || '(root)'}: ${first.message}` : 'invalid'}`,
      { where, data: { issues: parsed.error.issues.length } },
    );
  }
  return parsed.data as RoutingDocument;
}

/** The Topology a routing topology describes (endpoints without credentials), for createRouter. */
export function topologyOfRouting(t: RoutingTopology, file = `routing:${t.name}`): Topology {
  const scheme: Scheme = (() => {
    const s = t.scheme;
    switch (s.type) {
      case 'hash-mod':
        return { ...s, slots: [...s.slots] };
      case 'range':
        return {
          type: 'range',
          keyType: s.keyType,
          ranges: s.ranges.map((r) => ({
            shard: r.shard,
            from: r.from === null ? null : s.keyType === 'int' ? BigInt(r.from) : r.from,
            to: r.to === null ? null : s.keyType === 'int' ? BigInt(r.to) : r.to,
          })),
        };
      case 'consistent-hash':
        return { type: 'consistent-hash', hash: s.hash, vnodes: s.vnodes, seed: BigInt(s.seed) };
      case 'directory':
        return {
          type: 'directory',
          source: { kind: 'file', path: file },
          ...(s.default !== undefined ? { default: s.default } : {}),
          entries: new Map(s.entries),
        };
    }
  })();
  const tables = t.tables.map((x) => ({ ...x }));
  return {
    version: 1,
    file,
    name: t.name,
    shards: t.shards.map((s) => ({
      name: s.name,
      endpoint: {
        host: s.host,
        port: s.port,
        ...(s.socket ? { socket: s.socket } : {}),
        database: s.database,
        user: '',
      },
      weight: s.weight,
    })),
    tables,
    groups: [],
    scheme,
  };
}

// ---------------------------------------------------------------------------------------------
// Routing

/**
 * A Router over a routing document: `ownerOf` is the owner for writes, `readOwnerOf` for reads.
 * `shards` lists every shard the document can name (write rule's first, then the rest).
 */
export interface RoutingRouter extends Router {
  readOwnerOf(key: RouteKey): string;
  /** Where a shard named by this document lives (no credentials). */
  endpointOf(shard: string): RoutingShard | undefined;
  readonly document: RoutingDocument;
}

function ruleOwner(rule: RoutingRule, where: string): (key: RouteKey) => string {
  const base = createRouter(topologyOfRouting(rule.topology, `${where}.topology`));
  if (!rule.canary) return (key) => base.ownerOf(key);
  const next = createRouter(topologyOfRouting(rule.canary.next, `${where}.canary.next`));
  const flipped = new Set(rule.canary.flipped.map((p) => `${p.from}\u0000${p.to}`));
  return (key) => {
    const a = base.ownerOf(key);
    const b = next.ownerOf(key);
    return flipped.has(`${a}\u0000${b}`) ? b : a;
  };
}

export function createRoutingRouter(doc: RoutingDocument): RoutingRouter {
  const writeOwner = ruleOwner(doc.writes, 'writes');
  const readOwner = doc.reads === doc.writes ? writeOwner : ruleOwner(doc.reads, 'reads');
  const endpoints = new Map<string, RoutingShard>();
  for (const rule of [doc.writes, doc.reads]) {
    for (const t of [rule.topology, ...(rule.canary ? [rule.canary.next] : [])]) {
      for (const s of t.shards) if (!endpoints.has(s.name)) endpoints.set(s.name, s);
    }
  }
  const shards = [...endpoints.keys()];
  const index = new Map(shards.map((n, i) => [n, i]));
  return {
    scheme: doc.writes.topology.scheme.type,
    shards,
    ownerOf: writeOwner,
    ownerIndexOf: (key) => index.get(writeOwner(key))!,
    readOwnerOf: readOwner,
    endpointOf: (shard) => endpoints.get(shard),
    document: doc,
  };
}

// ---------------------------------------------------------------------------------------------
// Control schema

export interface RoutingVersion {
  version: number;
  jobId: number | null;
  /** Name of the job that wrote it, when the job still exists. */
  jobName: string | null;
  routingHash: string;
  active: boolean;
  /** UTC DATETIME(6) text as stored. */
  createdAt: string;
}

const VERSION_COLUMNS = 'v.version, v.job_id, j.name AS job_name, v.routing_hash, v.active, v.created_at';

function toVersion(r: Record<string, unknown>): RoutingVersion {
  return {
    version: Number(r.version),
    jobId: r.job_id === null ? null : Number(r.job_id),
    jobName: r.job_name === null || r.job_name === undefined ? null : String(r.job_name),
    routingHash: String(r.routing_hash),
    active: Number(r.active) === 1,
    createdAt: String(r.created_at),
  };
}

/** The active routing version and its document, or undefined when none was ever recorded. */
export async function readActiveRouting(
  conn: Connection,
): Promise<{ version: RoutingVersion; document: RoutingDocument } | undefined> {
  const [rows] = await conn.query(
    `SELECT ${VERSION_COLUMNS}, v.routing FROM reshard_routing_versions v
       LEFT JOIN reshard_jobs j ON j.id = v.job_id WHERE v.active = 1`,
  );
  const r = (rows as Record<string, unknown>[])[0];
  if (!r) return undefined;
  const version = toVersion(r);
  return { version, document: parseRouting(String(r.routing), `routing version ${version.version}`) };
}

/** Version number and hash of the active routing, without reading the document (cheap to poll). */
export async function readActiveRoutingVersion(conn: Connection): Promise<RoutingVersion | undefined> {
  const [rows] = await conn.query(
    `SELECT ${VERSION_COLUMNS} FROM reshard_routing_versions v
       LEFT JOIN reshard_jobs j ON j.id = v.job_id WHERE v.active = 1`,
  );
  const r = (rows as Record<string, unknown>[])[0];
  return r ? toVersion(r) : undefined;
}

/** Every routing version, newest first (documents not read). */
export async function listRoutingVersions(conn: Connection, limit = 20): Promise<RoutingVersion[]> {
  const [rows] = await conn.query(
    `SELECT ${VERSION_COLUMNS} FROM reshard_routing_versions v
       LEFT JOIN reshard_jobs j ON j.id = v.job_id ORDER BY v.version DESC LIMIT ?`,
    [limit],
  );
  return (rows as Record<string, unknown>[]).map(toVersion);
}

/**
 * Insert the next routing version (max + 1) and, with `activate`, make it the only active one.
 * Opens no transaction: call it inside the caller's, so the flip commits with whatever journal
 * row describes it. Locks the table's rows (FOR UPDATE) so two writers get distinct versions.
 */
export async function recordRoutingVersion(
  conn: Connection,
  input: { jobId: number | null; document: RoutingDocument; activate: boolean },
): Promise<number> {
  const [rows] = await conn.query(
    'SELECT COALESCE(MAX(version), 0) AS v FROM reshard_routing_versions FOR UPDATE',
  );
  const version = Number((rows as { v: string | number }[])[0]?.v ?? 0) + 1;
  if (input.activate) {
    await conn.query('UPDATE reshard_routing_versions SET active = 0 WHERE active = 1');
  }
  await conn.query(
    'INSERT INTO reshard_routing_versions (version, job_id, routing, routing_hash, active) VALUES (?, ?, ?, ?, ?)',
    [
      version,
      input.jobId,
      serializeRouting(input.document),
      routingHash(input.document),
      input.activate ? 1 : 0,
    ],
  );
  return version;
}

/** Make an existing version the active one (a rollback to an earlier routing). No transaction. */
export async function activateRoutingVersion(conn: Connection, version: number): Promise<void> {
  const [rows] = await conn.query(
    'SELECT version FROM reshard_routing_versions WHERE version = ? FOR UPDATE',
    [version],
  );
  if ((rows as unknown[]).length === 0) {
    throw new PreconditionError('E_ROUTING_VERSION_NOT_FOUND', `routing version ${version} does not exist`);
  }
  await conn.query('UPDATE reshard_routing_versions SET active = 0 WHERE active = 1 AND version <> ?', [
    version,
  ]);
  await conn.query('UPDATE reshard_routing_versions SET active = 1 WHERE version = ?', [version]);
}
