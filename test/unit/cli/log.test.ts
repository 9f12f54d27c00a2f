/**
 * The logger (src/output.ts) loads pino on its first line, not when the module loads: most
 * commands never log, and pino costs ~40 ms of CPU to load on a 2-core machine. Checked in a
 * child process on the built module, so the CommonJS module cache seen is that process's own.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../support/cli.js';

const script = `
import { createRequire } from 'node:module';
import { log, registerSecret } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'output.js')).href)};
const cache = createRequire(import.meta.url).cache;
const pinoLoaded = () => Object.keys(cache).some((k) => /[\\\\/]node_modules[\\\\/]pino[\\\\/]/.test(k));
process.stdout.write(JSON.stringify({ before: pinoLoaded() }) + '\\n');
registerSecret('hunter2-secret');
log().info({ dsn: 'mysql://app:pw-in-dsn@db1:3306/shop', note: 'hunter2-secret', config: { user: 'app', password: 'ab' }, ref: { password: { env: 'PW' } }, bits: { password_resets: 3, token: 'kept' } }, 'connected with hunter2-secret');
process.stdout.write(JSON.stringify({ after: pinoLoaded() }) + '\\n');
`;

describe('log()', () => {
  it('loads pino on first use and writes one redacted JSON line to stderr', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, RESHARD_LOG_LEVEL: 'info' },
    });
    expect(r.status, r.stderr).toBe(0);
    const [before, after] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(before).toEqual({ before: false });
    expect(after).toEqual({ after: true });
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line.level).toBe(30);
    expect(line.msg).toBe('connected with ***');
    expect(line.note).toBe('***');
    expect(line.dsn).toBe('mysql://app:***@db1:3306/shop');
    // A password under a config's credential key is masked, however short; a reference to one
    // ({ env }) and names that only look secret (a table `password_resets`) are shown as they are.
    expect(line.config).toEqual({ user: 'app', password: '***' });
    expect(line.ref).toEqual({ password: { env: 'PW' } });
    expect(line.bits).toEqual({ password_resets: 3, token: 'kept' });
    expect(r.stderr).not.toContain('hunter2-secret');
  });
});
