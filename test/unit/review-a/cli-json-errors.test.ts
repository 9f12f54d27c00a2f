/**
 * With --json, every failure is one JSON document on stdout ({ ok: false, error: { code, … } })
 * and nothing else — including the failures commander detects while parsing flags.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../support/cli.js';

function reshard(...args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/reshard'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, RESHARD_LOG_LEVEL: 'warn' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('--json on flag errors', () => {
  it.each([
    ['an unknown option', ['status', '--json', '--bogus']],
    ['a missing required option', ['copy', '--json']],
    ['an option without its argument', ['verify', '--json', '--plan']],
  ])('%s: exit 2 and one JSON error document on stdout', (_what, args) => {
    const r = reshard(...args);
    expect(r.code).toBe(2);
    let body: { ok?: boolean; error?: { code?: string; kind?: string } } | undefined;
    expect(
      () => {
        body = JSON.parse(r.stdout) as typeof body;
      },
      `stdout was ${JSON.stringify(r.stdout)}`,
    ).not.toThrow();
    expect(body?.ok).toBe(false);
    expect(body?.error?.kind).toBe('usage');
    expect(body?.error?.code).toMatch(/^E_/);
  });
});
