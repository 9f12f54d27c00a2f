/**
 * `reshard validate` through the built CLI (bin/reshard → dist/cli.js), as a user runs it:
 * exit 2 on a bad topology with file, path and fix on stderr; `--json` puts the error on stdout.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'reshard');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

function reshard(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  // The global setup rebuilds a stale dist/ too; this keeps the file runnable on its own.
  const cli = join(ROOT, 'dist', 'cli.js');
  if (!existsSync(cli) || newestMtime(join(ROOT, 'src')) > statSync(cli).mtimeMs) {
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'pipe' });
    } catch (e) {
      // tsc still emits when a file elsewhere has a type error; only a missing CLI is fatal.
      if (!existsSync(cli)) throw e;
    }
  }
}, 120_000);

describe('reshard validate (built CLI)', () => {
  it('exits 0 and prints one ok line per good topology', () => {
    const r = reshard(
      'validate',
      'fixtures/topologies/shop-2-hashmod.yaml',
      'fixtures/topologies/shop-3-range.yaml',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^fixtures\/topologies\/shop-2-hashmod\.yaml: ok \(2 shards, 6 tables, hash-mod, sha256 [0-9a-f]{12}\)$/m,
    );
    expect(r.stdout).toMatch(/^fixtures\/topologies\/shop-3-range\.yaml: ok \(3 shards, 6 tables, range, /m);
  });

  it('exits 2 and names the file:line, field path and fix on stderr', () => {
    const file = 'fixtures/bad-topologies/17-port-out-of-range.yaml';
    const r = reshard('validate', file);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('E_TOPOLOGY_INVALID');
    expect(r.stderr).toContain(
      `${file}:7: shards[1].port: must be a whole number from 1 to 65535, got 344020`,
    );
    expect(r.stderr).toContain('fix: set port to a whole number from 1 to 65535');
  });

  it('lists every problem of a file', () => {
    const r = reshard('validate', 'fixtures/bad-topologies/20-several-problems.yaml');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('(7 problems)');
    expect(r.stderr.match(/ fix: /g)).toHaveLength(7);
  });

  it('--json prints the error with every issue on stdout', () => {
    const file = 'fixtures/bad-topologies/04-unknown-field-shardkey.yaml';
    const r = reshard('validate', '--json', file);
    expect(r.code).toBe(2);
    const body = JSON.parse(r.stdout) as {
      ok: boolean;
      error: { code: string; kind: string; where: string; data: { issues: unknown[] } };
    };
    expect(body.ok).toBe(false);
    expect(body.error).toMatchObject({ code: 'E_TOPOLOGY_INVALID', kind: 'usage', where: file });
    expect(body.error.data.issues).toEqual([
      {
        file: `${file}:7`,
        path: 'tables[0].shardkey',
        message: 'is not a known field',
        hint: "did you mean 'shardKey'? rename shardkey to shardKey",
      },
    ]);
  });

  it('--json on good files prints the topologies', () => {
    const r = reshard('validate', '--json', 'fixtures/topologies/shop-4-consistent.yaml');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: true,
      topologies: [
        {
          file: 'fixtures/topologies/shop-4-consistent.yaml',
          shards: 4,
          tables: 6,
          scheme: 'consistent-hash',
        },
      ],
    });
  });

  it('a syntax error exits 2 with its line', () => {
    const r = reshard('validate', 'fixtures/bad-topologies/01-yaml-syntax.yaml');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('E_TOPOLOGY_YAML');
    expect(r.stderr).toContain('fixtures/bad-topologies/01-yaml-syntax.yaml:5: (root): YAML syntax error');
  });

  it('never prints an inline or DSN password', () => {
    for (const f of ['06-inline-password.yaml', '07-password-in-dsn.yaml', '22-password-in-dsn-query.yaml']) {
      const r = reshard('validate', '--json', `fixtures/bad-topologies/${f}`);
      expect(r.code).toBe(2);
      expect(r.stdout + r.stderr).not.toContain('hunter2');
    }
  });
});
