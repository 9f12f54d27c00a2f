import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { port } from '../../support/db.js';
import { dropDb, freshControl } from './helpers.js';

const BIN = join(import.meta.dirname, '..', '..', '..', 'bin', 'reshard');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function reshard(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const { RESHARD_CONTROL_DSN: _d, RESHARD_CONTROL_PASSWORD: _p, ...base } = process.env;
  try {
    const { stdout, stderr } = await promisify(execFile)(BIN, args, { env: { ...base, ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
    };
  }
}

describe('reshard init (CLI)', () => {
  let db: string;
  let dsn: string;
  beforeEach(() => {
    ({ db, dsn } = freshControl('cli_init'));
  });
  afterEach(() => dropDb(db));

  it('applies the migrations, then says it is up to date', async () => {
    const first = await reshard(['init', '--control', dsn]);
    expect(first.stderr).toBe('');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^applied 0001_core \(sha256 [0-9a-f]{12}\)$/m);
    expect(first.stdout).toMatch(/^applied 0002_copy_tail_verify /m);

    const again = await reshard(['init', '--control', dsn]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already up to date \(version \d+\)/);
    expect(again.stdout).not.toMatch(/applied/);
  });

  it('reads RESHARD_CONTROL_DSN and prints JSON with --json', async () => {
    const res = await reshard(['init', '--json'], { RESHARD_CONTROL_DSN: dsn });
    expect(res.code, res.stderr).toBe(0);
    const body = JSON.parse(res.stdout) as {
      ok: boolean;
      database: string;
      upToDate: boolean;
      applied: { name: string }[];
    };
    expect(body).toMatchObject({ ok: true, database: db, upToDate: false });
    expect(body.applied.map((m) => m.name)).toContain('core');
    const again = JSON.parse((await reshard(['init', '--json'], { RESHARD_CONTROL_DSN: dsn })).stdout) as {
      upToDate: boolean;
    };
    expect(again.upToDate).toBe(true);
  });

  it('without a control DSN exits 2 with E_NO_CONTROL_DSN', async () => {
    const res = await reshard(['init']);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain('E_NO_CONTROL_DSN');
  });

  it('refuses a password in the DSN (exit 2) and never prints it', async () => {
    const res = await reshard(['init', '--control', `mysql://root:secret@127.0.0.1:${port('ctl')}/${db}`]);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain('E_CONTROL_DSN');
    expect(res.stdout + res.stderr).not.toContain('secret');
    const json = await reshard([
      'init',
      '--json',
      '--control',
      `mysql://root:secret@127.0.0.1:${port('ctl')}/${db}`,
    ]);
    expect(json.code, json.stderr).toBe(2);
    expect(json.stdout + json.stderr).not.toContain('secret');
  });
});
