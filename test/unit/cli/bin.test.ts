/**
 * bin/reshard runs the one-file bundle only while it is current: a bundle older than any module
 * tsc wrote (a `tsc`-only or `tsc --watch` rebuild) must not run stale code. Checked on a copy of
 * bin/reshard beside a made-up dist/, so the real build is never touched.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../../support/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fakeInstall(
  withBundle: boolean,
  body = (who: string) => `process.stdout.write('${who}'); return 0;`,
): {
  dir: string;
  run: () => string;
  age: (rel: string, s: number) => void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'reshard-bin-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'dist', 'state'), { recursive: true });
  copyFileSync(join(ROOT, 'bin', 'reshard'), join(dir, 'bin', 'reshard'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  const entry = (who: string) => `export async function main() { ${body(who)} }\n`;
  writeFileSync(join(dir, 'dist', 'cli.js'), entry('modules'));
  writeFileSync(join(dir, 'dist', 'state', 'migrate.js'), 'export {};\n');
  if (withBundle) {
    mkdirSync(join(dir, 'dist', 'bundle'));
    writeFileSync(join(dir, 'dist', 'bundle', 'cli.js'), entry('bundle'));
  }
  const age = (rel: string, s: number) => {
    const t = new Date(Date.now() - s * 1000);
    utimesSync(join(dir, rel), t, t);
  };
  const run = () => execFileSync(process.execPath, [join(dir, 'bin', 'reshard')], { encoding: 'utf8' });
  return { dir, run, age };
}

describe('bin/reshard', () => {
  it('runs the bundle when it is at least as new as every module in dist/', () => {
    const f = fakeInstall(true);
    f.age('dist/cli.js', 60);
    f.age('dist/state/migrate.js', 60);
    expect(f.run()).toBe('bundle');
  });

  it('runs the modules when any of them is newer than the bundle (a tsc-only rebuild)', () => {
    const f = fakeInstall(true);
    f.age('dist/bundle/cli.js', 60);
    f.age('dist/cli.js', 60);
    // Only a nested module was rebuilt since: still newer than the bundle.
    expect(f.run()).toBe('modules');
  });

  it('runs the modules when there is no bundle', () => {
    expect(fakeInstall(false).run()).toBe('modules');
  });

  it('runs the real build (the bundle after npm run build) and prints the version', () => {
    const out = execFileSync(process.execPath, [join(ROOT, 'bin', 'reshard'), '--version'], {
      encoding: 'utf8',
    });
    expect(out.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('exits with the command status when a handle leaks after the command returned, and says so', () => {
    // The command leaves a timer that would keep the process alive for a minute.
    const f = fakeInstall(
      false,
      () => `setInterval(() => {}, 60_000); process.stdout.write('done'); return 3;`,
    );
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [join(f.dir, 'bin', 'reshard')], {
      encoding: 'utf8',
      env: { ...process.env, RESHARD_EXIT_GRACE_MS: '300' },
      timeout: 20_000,
    });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('done');
    expect(r.stderr).toMatch(/still running 300 ms after the command finished/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('does not wait out the grace when nothing leaks', () => {
    const f = fakeInstall(false, () => `process.stdout.write('x'.repeat(200_000)); return 0;`);
    const t0 = Date.now();
    // A grace far longer than the bound: only a process that ends on its own passes.
    const r = spawnSync(process.execPath, [join(f.dir, 'bin', 'reshard')], {
      encoding: 'utf8',
      env: { ...process.env, RESHARD_EXIT_GRACE_MS: '60000' },
      timeout: 30_000,
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toHaveLength(200_000);
    expect(r.stderr).toBe('');
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('never cuts off output a slow reader has not taken yet', () => {
    // 1 MB is far more than a pipe holds; the reader starts only after 3 s, well past the grace
    // even when node takes a while to start.
    const f = fakeInstall(
      false,
      () => `setInterval(() => {}, 60_000); process.stdout.write('y'.repeat(1_000_000)); return 0;`,
    );
    const r = spawnSync(
      'sh',
      ['-c', `"${process.execPath}" "${join(f.dir, 'bin', 'reshard')}" | (sleep 3; wc -c)`],
      { encoding: 'utf8', env: { ...process.env, RESHARD_EXIT_GRACE_MS: '300' }, timeout: 20_000 },
    );
    expect(r.stdout.trim()).toBe('1000000');
    expect(r.stderr).toMatch(/still running 300 ms after the command finished/);
  });
});
