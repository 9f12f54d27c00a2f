/**
 * The control DSN follows the topology's DSN rules (src/db/dsn.ts): no password anywhere in it,
 * no parameter reshard would ignore; and a failure to reach the control server points at the
 * control DSN, not the topology.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseControlDsn } from '../../../src/db/connect.js';
import { ReshardError } from '../../../src/errors.js';
import { connectControl } from '../../../src/state/control.js';

function errorOf(f: () => unknown): ReshardError {
  try {
    f();
  } catch (e) {
    if (e instanceof ReshardError) return e;
    throw e;
  }
  throw new Error('did not throw');
}

describe('parseControlDsn', () => {
  const saved = process.env.RESHARD_CONTROL_PASSWORD;
  afterEach(() => {
    if (saved === undefined) delete process.env.RESHARD_CONTROL_PASSWORD;
    else process.env.RESHARD_CONTROL_PASSWORD = saved;
  });

  it('reads ?socket= and ?password-file=', () => {
    delete process.env.RESHARD_CONTROL_PASSWORD;
    expect(parseControlDsn('mysql://ctl@db:3307/rc?socket=/run/m.sock&password-file=/run/pw')).toEqual({
      host: 'db',
      port: 3307,
      database: 'rc',
      user: 'ctl',
      socket: '/run/m.sock',
      password: { file: '/run/pw' },
    });
  });

  it.each(['password', 'passwd', 'pwd', 'Pwd'])('refuses ?%s= without echoing the value', (key) => {
    const e = errorOf(() => parseControlDsn(`mysql://ctl@db/rc?${key}=Zq9-value`));
    expect(e.code).toBe('E_CONTROL_DSN');
    expect(e.message).toContain(`'${key}'`);
    expect(JSON.stringify(e.toJSON())).not.toContain('Zq9-value');
  });

  it('refuses a parameter it would otherwise drop', () => {
    const e = errorOf(() => parseControlDsn('mysql://ctl@db/rc?ssl=true'));
    expect(e.code).toBe('E_CONTROL_DSN');
    expect(e.message).toContain("'ssl'");
  });
});

describe('connecting to the control server', () => {
  it('names the control DSN in the hint when the server cannot be reached', async () => {
    // Port 1 on loopback: refused at once, no server needed.
    const e = await connectControl('mysql://root@127.0.0.1:1/reshard_control').then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(ReshardError);
    expect((e as ReshardError).code).toBe('E_CONNECT');
    expect((e as ReshardError).hint).toContain('--control or RESHARD_CONTROL_DSN');
    expect((e as ReshardError).hint).not.toContain('topology');
  });
});
