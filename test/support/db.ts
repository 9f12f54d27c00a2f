/**
 * Helpers for integration tests against the shared sandbox servers. Every test creates its own
 * databases with unique names (fresh per test) and drops them afterwards.
 */
import { randomBytes } from 'node:crypto';
import mysql, { type Connection } from 'mysql2/promise';
import { inject } from 'vitest';
import { EXACT_VALUE_OPTIONS } from '../../src/db/connect.js';

export type SandboxName = 'ctl' | 's0' | 's1' | 't0' | 't1' | 't2';

export function sandbox() {
  return inject('sandbox');
}

export function port(name: SandboxName): number {
  return sandbox().ports[name];
}

/** A root connection to a sandbox server (exact-value options, UTC session). */
export async function rootConn(
  name: SandboxName,
  database?: string,
  opts: { multipleStatements?: boolean } = {},
): Promise<Connection> {
  const c = await mysql.createConnection({
    host: '127.0.0.1',
    port: port(name),
    user: 'root',
    ...(database ? { database } : {}),
    ...EXACT_VALUE_OPTIONS,
    multipleStatements: opts.multipleStatements ?? true,
  });
  await c.query("SET SESSION time_zone = '+00:00'");
  return c;
}

/** A unique database name for one test, e.g. `t_preflight_3f9a1c`. */
export function uniqueDb(prefix: string): string {
  return `t_${prefix.replace(/[^A-Za-z0-9_]/g, '_')}_${randomBytes(4).toString('hex')}`;
}

/** Create `db` on each named server; returns a function that drops them all. */
export async function createDatabases(
  names: SandboxName[],
  db: string,
  schemaSql?: string,
): Promise<() => Promise<void>> {
  for (const n of names) {
    const c = await rootConn(n);
    try {
      await c.query(`CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4`);
      if (schemaSql) {
        await c.query(`USE \`${db}\``);
        await c.query(schemaSql);
      }
    } finally {
      await c.end();
    }
  }
  return async () => {
    for (const n of names) {
      const c = await rootConn(n);
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${db}\``);
      } finally {
        await c.end();
      }
    }
  };
}

/** Topology YAML for sandbox servers: shards map name → sandbox server, all on database `db`. */
export function topologyYaml(opts: {
  shards: { name: string; server: SandboxName; database: string }[];
  tables: { name: string; shardKey: string }[];
  groups?: { name: string; tables: string[] }[];
  scheme: string;
}): string {
  const lines = ['version: 1', 'shards:'];
  for (const s of opts.shards) {
    lines.push(
      `  - { name: ${s.name}, host: 127.0.0.1, port: ${port(s.server)}, database: ${JSON.stringify(s.database)}, user: root }`,
    );
  }
  lines.push('tables:');
  for (const t of opts.tables)
    lines.push(`  - { name: ${JSON.stringify(t.name)}, shardKey: ${JSON.stringify(t.shardKey)} }`);
  if (opts.groups) {
    lines.push('groups:');
    for (const g of opts.groups)
      lines.push(`  - { name: ${g.name}, tables: [${g.tables.map((t) => JSON.stringify(t)).join(', ')}] }`);
  }
  lines.push(`scheme: ${opts.scheme}`);
  return `${lines.join('\n')}\n`;
}
