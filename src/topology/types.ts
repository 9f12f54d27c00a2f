/**
 * The normalized topology model: what a validated topology file becomes. Everything after
 * loading (planner, router, preflight, copy) works on these types, never on raw YAML.
 *
 * Keys: a shard key value is a `ShardKey` — a bigint for integer columns, a string for
 * character columns, a Buffer for binary columns. Its *canonical string form* is the decimal
 * text of an integer and the raw bytes of a string (UTF-8) or binary; `crc32` and `xxhash64`
 * hash those bytes, which is exactly what MySQL's `CRC32(col)` sees.
 */

export type ShardKey = bigint | string | Buffer;

/** A reference to a secret: never the secret itself. */
export type SecretRef = { env: string } | { file: string };

export interface TlsOptions {
  /** Path to a PEM CA bundle. */
  ca?: string;
  /** Path to a PEM client certificate (mutual TLS). */
  cert?: string;
  /** Path to the PEM private key of the client certificate. */
  key?: string;
  /** Check that the server certificate names the host we dialled. Default true when TLS is on. */
  verifyIdentity: boolean;
}

export interface ShardEndpoint {
  host: string;
  port: number;
  /** Unix socket path; when set, host/port are ignored for dialling. */
  socket?: string;
  database: string;
  user: string;
  password?: SecretRef;
  tls?: TlsOptions;
}

export interface Shard {
  name: string;
  endpoint: ShardEndpoint;
  /** Relative capacity for consistent hashing (vnodes = round(vnodes × weight)). Default 1. */
  weight: number;
}

export interface TableSpec {
  name: string;
  /** Column whose value routes the row. Need not be the primary key. */
  shardKey: string;
}

/** Tables that share a shard key domain and therefore always move together. */
export interface TableGroup {
  name: string;
  tables: TableSpec[];
}

export type HashModHash = 'identity' | 'crc32';

export interface HashModScheme {
  type: 'hash-mod';
  hash: HashModHash;
  modulus: number;
  /** slots[r] = name of the shard owning residue r; length = modulus. */
  slots: string[];
}

/** Half-open key interval [from, to); `null` is unbounded. */
export interface RangeSpec {
  shard: string;
  from: bigint | string | null;
  to: bigint | string | null;
}

export interface RangeScheme {
  type: 'range';
  keyType: 'int' | 'string';
  /** Sorted by `from`, contiguous, covering the whole key space. */
  ranges: RangeSpec[];
}

export interface ConsistentHashScheme {
  type: 'consistent-hash';
  hash: 'xxhash64';
  /** Virtual nodes for a shard of weight 1. */
  vnodes: number;
  /** Seed of the key hash and of the vnode point hash. */
  seed: bigint;
}

export type DirectorySource =
  | { kind: 'file'; path: string }
  | { kind: 'table'; shard: string; table: string; keyColumn: string; shardColumn: string };

export interface DirectoryScheme {
  type: 'directory';
  source: DirectorySource;
  /** Owner of keys absent from the directory; without it such keys are an error. */
  default?: string;
  /**
   * key (canonical string form) → shard name. Filled by the loader (file) or by the
   * directory reader (table) before planning, so the planner stays pure.
   */
  entries?: Map<string, string>;
}

export type Scheme = HashModScheme | RangeScheme | ConsistentHashScheme | DirectoryScheme;

export interface Topology {
  version: 1;
  /** Where it was loaded from (for messages); not part of the hash. */
  file: string;
  name: string;
  shards: Shard[];
  tables: TableSpec[];
  groups: TableGroup[];
  scheme: Scheme;
}
