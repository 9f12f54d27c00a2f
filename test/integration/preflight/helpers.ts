/**
 * Helpers for preflight tests: topology YAML for arbitrary endpoints (own users, passwords by
 * env var, extra servers), and a private mariadbd started with deliberately wrong settings.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql, { type Connection } from 'mysql2/promise';
import {
  findServerBinary,
  type InstanceInfo,
  instanceInfo,
  startInstance,
  stopInstance,
} from '../../../src/sandbox/instances.js';
import { parseTopology } from '../../../src/topology/load.js';
import type { Topology } from '../../../src/topology/types.js';

export interface ShardDef {
  name: string;
  port: number;
  database: string;
  user?: string;
  passwordEnv?: string;
}

export function topology(
  name: string,
  shards: ShardDef[],
  tables: { name: string; shardKey: string }[],
  scheme = '{ type: hash-mod, hash: identity }',
): { yaml: string; topo: Topology } {
  const lines = ['version: 1', `name: ${name}`, 'shards:'];
  for (const s of shards) {
    const pw = s.passwordEnv ? `, password: { env: ${s.passwordEnv} }` : '';
    lines.push(
      `  - { name: ${s.name}, host: 127.0.0.1, port: ${s.port}, database: ${JSON.stringify(s.database)}, user: ${JSON.stringify(s.user ?? 'root')}${pw} }`,
    );
  }
  lines.push('tables:');
  for (const t of tables)
    lines.push(`  - { name: ${JSON.stringify(t.name)}, shardKey: ${JSON.stringify(t.shardKey)} }`);
  lines.push(`scheme: ${scheme}`);
  const yaml = `${lines.join('\n')}\n`;
  return { yaml, topo: parseTopology(yaml, `${name}.yaml`) };
}

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

export interface OwnServer {
  info: InstanceInfo;
  port: number;
  conn(database?: string): Promise<Connection>;
  /** Stop the server and delete its directory. */
  destroy(): Promise<void>;
}

/** Start a private mariadbd (own temp dir, free port) with extra server options. */
export async function startOwnServer(
  name: string,
  serverId: number,
  extraArgs: string[],
): Promise<OwnServer> {
  const bin = findServerBinary();
  const dir = mkdtempSync(join(tmpdir(), `reshard-preflight-${name}-`));
  const port = await freePort();
  const info = instanceInfo(dir, { name, port, serverId, extraArgs });
  try {
    await startInstance(bin, info);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    info,
    port,
    conn: (database?: string) =>
      mysql.createConnection({
        host: '127.0.0.1',
        port,
        user: 'root',
        ...(database ? { database } : {}),
        multipleStatements: true,
      }),
    destroy: async () => {
      try {
        await stopInstance(info);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Every table the topologies below list: a reserved word and a column name with a backtick. */
export const SCHEMA = `
CREATE TABLE \`order\` (
  \`id\` BIGINT UNSIGNED NOT NULL,
  \`customer_id\` BIGINT UNSIGNED NOT NULL,
  \`no\`\`te\` VARCHAR(64) NULL DEFAULT 'it''s',
  \`amount\` DECIMAL(19,4) NOT NULL DEFAULT 0,
  \`created_at\` DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (\`id\`),
  KEY (\`customer_id\`)
) ENGINE=InnoDB;
CREATE TABLE customers (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(80) NOT NULL,
  tier ENUM('free','Pro') NOT NULL DEFAULT 'free'
) ENGINE=InnoDB;
`;

export const TABLES = [
  { name: 'order', shardKey: 'customer_id' },
  { name: 'customers', shardKey: 'id' },
];

export function codes(issues: { code: string }[]): string[] {
  return [...new Set(issues.map((i) => i.code))].sort();
}
