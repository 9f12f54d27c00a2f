import { parseTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';

export interface ShardOpt {
  name: string;
  weight?: number;
}

/** A topology YAML with the given shards (each on its own host) and scheme (YAML flow or block text). */
export function topologyYaml(
  shards: (string | ShardOpt)[],
  scheme: string,
  tables = '  - { name: t, shardKey: id }',
): string {
  const list = shards
    .map((s) => (typeof s === 'string' ? { name: s } : s))
    .map(
      (s) =>
        `  - { name: ${s.name}, host: ${s.name}.db, port: 3306, database: app${s.weight === undefined ? '' : `, weight: ${s.weight}`} }`,
    )
    .join('\n');
  return `version: 1\nshards:\n${list}\ntables:\n${tables}\nscheme: ${scheme}\n`;
}

export function topology(shards: (string | ShardOpt)[], scheme: string, file = 'test.yaml'): Topology {
  return parseTopology(topologyYaml(shards, scheme), file);
}

export function names(prefix: string, n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${String(i + from).padStart(4, '0')}`);
}

export function rangeScheme(
  ranges: { shard: string; from?: bigint | string; to?: bigint | string }[],
): string {
  const lit = (v: bigint | string) => (typeof v === 'string' ? JSON.stringify(v) : v.toString());
  const items = ranges
    .map(
      (r) =>
        `    - { shard: ${r.shard}${r.from === undefined ? '' : `, from: ${lit(r.from)}`}${r.to === undefined ? '' : `, to: ${lit(r.to)}`} }`,
    )
    .join('\n');
  return `\n  type: range\n  ranges:\n${items}`;
}

/** A directory topology; entries are set directly (the loader would read them from a file). */
export function directoryTopology(
  shards: string[],
  entries: Record<string, string>,
  def?: string,
  file = 'test.yaml',
): Topology {
  const scheme = `{ type: directory, table: { shard: ${shards[0]}, name: dir, keyColumn: k, shardColumn: s }${def === undefined ? '' : `, default: ${def}`} }`;
  const t = parseTopology(topologyYaml(shards, scheme), file);
  if (t.scheme.type !== 'directory') throw new Error('unreachable');
  t.scheme.entries = new Map(Object.entries(entries));
  return t;
}
