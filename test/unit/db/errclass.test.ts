import { describe, expect, it } from 'vitest';
import { asReshardError, ExitCode, UsageError } from '../../../src/errors.js';

describe('asReshardError', () => {
  it('calls a lost connection transient (exit 5, re-run), not a defect', () => {
    const lost = Object.assign(new Error('Connection lost: The server closed the connection.'), {
      fatal: true,
      code: 'PROTOCOL_CONNECTION_LOST',
    });
    const killed = Object.assign(new Error('Connection was killed'), {
      errno: 1927,
      code: 'ER_CONNECTION_KILLED',
    });
    const deadlock = Object.assign(new Error('Deadlock found'), { errno: 1213 });
    for (const err of [lost, killed, deadlock]) {
      const e = asReshardError(err);
      expect(e.code).toBe('E_TRANSIENT');
      expect(e.exitCode).toBe(ExitCode.retriesExhausted);
      expect(e.message).toContain(err.message);
    }
  });

  it('keeps reshard errors as they are and calls anything else a bug', () => {
    const u = new UsageError('E_USAGE', 'bad flag');
    expect(asReshardError(u)).toBe(u);
    const syntax = Object.assign(new Error('You have an error in your SQL syntax'), { errno: 1064 });
    expect(asReshardError(syntax).code).toBe('E_BUG');
    expect(asReshardError(new TypeError('x is undefined')).exitCode).toBe(ExitCode.bug);
  });
});
