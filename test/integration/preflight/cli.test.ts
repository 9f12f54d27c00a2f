import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabases, port, rootConn, type SandboxName, uniqueDb } from '../../support/db.js';
import { SCHEMA, TABLES, topology } from './helpers.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');

function reshard(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(
      process.execPath,
      [join(ROOT, 'bin', 'reshard'), ...args],
      { cwd: ROOT, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 70) : 0;
        res({ code, stdout, stderr });
      },
    );
  });
}

describe('reshard preflight (CLI)', () => {
  const db = uniqueDb('pf_cli');
  const healthyDb = uniqueDb('pf_cli_ok');
  const user = `pfc_${randomBytes(4).toString('hex')}`;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const envVar = 'RESHARD_TEST_PF_CLI_PASSWORD';
  const dir = mkdtempSync(join(tmpdir(), 'reshard-preflight-cli-'));
  let drop: () => Promise<void>;
  let dropHealthy: () => Promise<void>;

  async function asRoot(server: SandboxName, sql: string) {
    const c = await rootConn(server);
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    drop = await createDatabases(['s0', 's1', 't0', 't1', 't2'], db, SCHEMA);
    dropHealthy = await createDatabases(['t0', 't1', 't2'], healthyDb, SCHEMA);
    await asRoot('t1', `CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`);
    await asRoot('t1', `GRANT SELECT, INSERT, UPDATE, DELETE ON \`${db}\`.* TO '${user}'@'%'`);
    const shard = (name: string, server: SandboxName, database = db) => ({
      name,
      port: port(server),
      database,
    });
    writeFileSync(
      join(dir, 'current.yaml'),
      topology('current', [shard('s0', 's0'), shard('s1', 's1')], TABLES).yaml,
    );
    writeFileSync(
      join(dir, 'healthy.yaml'),
      topology(
        'target',
        [shard('t0', 't0', healthyDb), shard('t1', 't1', healthyDb), shard('t2', 't2', healthyDb)],
        TABLES,
      ).yaml,
    );
    writeFileSync(
      join(dir, 'broken.yaml'),
      topology(
        'target',
        [
          shard('t0', 't0'),
          { name: 't1', port: port('t1'), database: db, user, passwordEnv: envVar },
          shard('t2', 't2'),
        ],
        TABLES,
      ).yaml,
    );
    await asRoot('t2', `ALTER TABLE \`${db}\`.customers MODIFY COLUMN name VARCHAR(100) NOT NULL`);
  });
  afterAll(async () => {
    await asRoot('t1', `DROP USER IF EXISTS '${user}'@'%'`);
    await drop();
    await dropHealthy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exits 3 with --json listing every failure code, and never prints the password', async () => {
    const r = await reshard(
      ['preflight', '--from', join(dir, 'current.yaml'), '--to', join(dir, 'broken.yaml'), '--json'],
      {
        [envVar]: password,
      },
    );
    expect(r.code).toBe(3);
    const doc = JSON.parse(r.stdout) as {
      ok: boolean;
      error: {
        code: string;
        data: { failures: { code: string; shard: string; side: string }[]; shards: unknown[] };
      };
    };
    expect(doc.ok).toBe(false);
    expect(doc.error.code).toBe('E_PREFLIGHT');
    expect(doc.error.data.failures.map((f) => `${f.side}/${f.shard}:${f.code}`)).toEqual([
      'to/t1:E_GRANTS',
      'to/t2:E_SCHEMA_MISMATCH',
    ]);
    expect(doc.error.data.shards).toHaveLength(5);
    expect(r.stderr).toContain('E_GRANTS');
    expect(r.stderr).toContain('E_SCHEMA_MISMATCH');
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('prints a table of checks per shard and exits 3 without --json', async () => {
    const r = await reshard(
      ['preflight', '--from', join(dir, 'current.yaml'), '--to', join(dir, 'broken.yaml')],
      { [envVar]: password },
    );
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(
      /side\s+shard\s+server\s+version\s+connect\s+version\s+binlog\s+server_id\s+grants\s+tables\s+schema/,
    );
    expect(r.stdout).toMatch(/to\s+t1\s+.*FAIL E_GRANTS/);
    expect(r.stdout).toMatch(/to\s+t2\s+.*FAIL E_SCHEMA_MISMATCH/);
    expect(r.stdout).toMatch(
      /from\s+s0\s+root@127\.0\.0\.1:\d+\/\S+\s+MariaDB [\d.]+\s+ok\s+ok\s+ok\s+ok\s+ok\s+ok\s+ok/,
    );
    expect(r.stderr).toContain('reshard: error E_PREFLIGHT');
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('exits 0 on a healthy estate', async () => {
    const r = await reshard(
      ['preflight', '--from', join(dir, 'current.yaml'), '--to', join(dir, 'healthy.yaml'), '--json'],
      {},
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; report: { failures: unknown[]; shards: unknown[] } };
    expect(doc.ok).toBe(true);
    expect(doc.report.failures).toEqual([]);
    expect(doc.report.shards).toHaveLength(5);
  });
});
