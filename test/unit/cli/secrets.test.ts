/**
 * How passwords reach reshard: the control DSN (flag or RESHARD_CONTROL_DSN) and password
 * references resolved at connect time, and what a child process (the --on-flip hook) inherits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseControlDsn, resolveSecret } from '../../../src/db/connect.js';
import { ReshardError } from '../../../src/errors.js';
import { envWithoutSecrets } from '../../../src/output.js';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof ReshardError ? `${e.kind}:${e.code}` : `other:${String(e)}`;
  }
  return undefined;
}

describe('control DSN', () => {
  it.each([
    'mysql://root@127.0.0.1:3306/reshard_control?password=hunter22',
    'mysql://root@127.0.0.1:3306/reshard_control?pwd=hunter22',
    'mysql://root@127.0.0.1:3306/reshard_control?PASSWORD=hunter22',
  ])('a password in the query string is refused like one in the userinfo: %s', (dsn) => {
    expect(codeOf(() => parseControlDsn('mysql://root:hunter22@127.0.0.1:3306/reshard_control'))).toBe(
      'usage:E_CONTROL_DSN',
    );
    expect(codeOf(() => parseControlDsn(dsn))).toBe('usage:E_CONTROL_DSN');
  });

  it('a query parameter reshard does not read (e.g. ssl) is refused, not silently dropped', () => {
    expect(codeOf(() => parseControlDsn('mysql://root@db.example:3306/reshard_control?ssl=true'))).toBe(
      'usage:E_CONTROL_DSN',
    );
  });
});

describe('the environment of the --on-flip hook', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  });

  it('leaves out a shard password variable reshard resolved, however short the password', () => {
    process.env.REV_A_SHARD_PW = 'p4$';
    expect(resolveSecret({ env: 'REV_A_SHARD_PW' }, 'shards[0]')).toBe('p4$');
    const env = envWithoutSecrets(process.env);
    expect(env.REV_A_SHARD_PW).toBeUndefined();
  });
});
