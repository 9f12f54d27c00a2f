/**
 * What output.ts masks: state for the control schema (`toJson`) is stored exactly as given;
 * output for people and scripts (`toReportJson`, --json, --report) masks secret values and DSN
 * passwords only, never a table, column or key because of its name.
 */
import { describe, expect, it } from 'vitest';
import { envWithoutSecrets, registerSecret, toJson, toReportJson } from '../../../src/output.js';

registerSecret('s3cr3t-value');

describe('toJson (control-schema state)', () => {
  it('keeps secret-looking names and every value as written', () => {
    const detail = {
      bits: { password_resets: 3, personal_access_tokens: 2, token: 1 },
      diffKeys: { password_resets: ['0a01'] },
      secret: 'plain text',
      n: 12345678901234567890n,
    };
    expect(JSON.parse(toJson(detail, 0))).toEqual({ ...detail, n: '12345678901234567890' });
    // State is not output: even a registered value is stored as it is (none should reach it).
    expect(toJson({ note: 's3cr3t-value' })).toContain('s3cr3t-value');
  });
});

describe('toReportJson (--json, --report)', () => {
  it('shows table and column names and row values as they are', () => {
    const report = {
      tables: [{ table: 'password_resets' }],
      differences: [
        { table: 'users', columns: ['token'], sourceRow: { id: '7', token: 'abc', password: 'x' } },
      ],
    };
    expect(JSON.parse(toReportJson(report))).toEqual(report);
  });

  it('masks registered secrets and DSN passwords in string values, also inside error objects', () => {
    const err = Object.assign(new Error('x'), { sqlMessage: 'failed with s3cr3t-value' });
    const shown = JSON.parse(
      toReportJson({ msg: 'login s3cr3t-value', dsn: 'mysql://app:pw@db1:3306/shop', err, at: new Date(0) }),
    );
    expect(shown).toEqual({
      msg: 'login ***',
      dsn: 'mysql://app:***@db1:3306/shop',
      err: { sqlMessage: 'failed with ***' },
      at: '1970-01-01T00:00:00.000Z',
    });
  });
});

describe('envWithoutSecrets', () => {
  it('leaves out the variables a secret was resolved from, whatever its length', () => {
    registerSecret('ab', 'SHORT_PW');
    const env = envWithoutSecrets({ SHORT_PW: 'ab', OTHER: 'ab', HOLDS: 's3cr3t-value', PATH: '/bin' });
    // OTHER holds the same short value but reshard did not read it: too short to match by value.
    expect(env).toEqual({ OTHER: 'ab', PATH: '/bin' });
  });

  it('passes RESHARD_CONTROL_DSN on only when it carries no password', () => {
    const dsn = (v: string) => envWithoutSecrets({ RESHARD_CONTROL_DSN: v }).RESHARD_CONTROL_DSN;
    expect(dsn('mysql://ctl@db:3306/reshard_control?password-file=/run/pw')).toBe(
      'mysql://ctl@db:3306/reshard_control?password-file=/run/pw',
    );
    expect(dsn('mysql://ctl:pw@db:3306/reshard_control')).toBeUndefined();
    expect(dsn('mysql://ctl@db:3306/reshard_control?PWD=pw')).toBeUndefined();
    expect(dsn('ctl:pw@db')).toBeUndefined();
    expect(envWithoutSecrets({ RESHARD_CONTROL_PASSWORD: 'pw' })).toEqual({});
  });
});
