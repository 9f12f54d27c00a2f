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

  it('calls access denied a missing grant (exit 3, the server’s words), not a defect', () => {
    // Found by review I: a target account without rights on the meta database ended as E_BUG.
    for (const [errno, text] of [
      [1044, "Access denied for user 'rs'@'%' to database '_reshard'"],
      [1142, "INSERT command denied to user 'rs'@'%' for table `shop`.`orders`"],
      [1143, "SELECT command denied to user 'rs'@'%' for column 'note' in table 'orders'"],
      [1227, 'Access denied; you need (at least one of) the READ_ONLY ADMIN privilege(s) for this operation'],
    ] as const) {
      const e = asReshardError(Object.assign(new Error(text), { errno }));
      expect(e.code).toBe('E_GRANTS');
      expect(e.exitCode).toBe(ExitCode.precondition);
      expect(e.message).toContain(text);
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
