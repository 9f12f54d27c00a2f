/**
 * Flag errors commander finds: without --json, commander's own text on stderr (as before); with
 * --json, reshard's E_USAGE document on stdout and one human line on stderr, no commander text —
 * with --json every failure is one JSON document on stdout, those found while parsing flags too.
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

describe('flag errors', () => {
  it('without --json: commander explains on stderr, nothing on stdout, exit 2', () => {
    const r = reshard('status', '--bogus');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("error: unknown option '--bogus'");
    expect(r.stderr).toContain('(run with --help for usage)');
  });

  it("with --json: reshard's error only, the hint naming the command", () => {
    const r = reshard('verify', '--json', '--plan');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      error: {
        code: 'E_USAGE',
        kind: 'usage',
        message: "option '--plan <file>' argument missing",
        hint: 'run `reshard verify --help` for usage',
      },
    });
    expect(r.stderr).toBe(
      "reshard: error E_USAGE: option '--plan <file>' argument missing\n  fix: run `reshard verify --help` for usage\n",
    );
  });
});

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
