import { describe, expect, it } from 'vitest';
import type { ReshardError } from '../../../src/errors.js';
import {
  type AppliedMigration,
  checksumOf,
  compareSchema,
  loadMigrations,
  type Migration,
  splitStatements,
} from '../../../src/state/migrate.js';

describe('splitStatements', () => {
  it('splits on ; at the end of a line and drops whole-line comments', () => {
    const sql = [
      '-- header; with a semicolon at the end;',
      'CREATE TABLE a (',
      "  x VARCHAR(8) DEFAULT 'a;b' -- inline",
      ');',
      '',
      'CREATE TABLE b (y INT);   ',
      '  -- trailing comment',
      '',
    ].join('\r\n');
    expect(splitStatements(sql)).toEqual([
      "CREATE TABLE a (\n  x VARCHAR(8) DEFAULT 'a;b' -- inline\n)",
      'CREATE TABLE b (y INT)',
    ]);
  });

  it('refuses a file whose last statement is not terminated', () => {
    expect(() => splitStatements('CREATE TABLE a (x INT);\nCREATE TABLE b (y INT)\n', 'f.sql')).toThrow(
      /f\.sql/,
    );
  });
});

describe('shipped migrations', () => {
  const known = loadMigrations();

  it('are numbered 1…N and every table they create is reshard_ prefixed and re-runnable', () => {
    expect(known.map((m) => m.version)).toEqual(known.map((_, i) => i + 1));
    for (const m of known) {
      for (const s of m.statements) {
        const create = /^CREATE TABLE\s+(IF NOT EXISTS\s+)?`?(\w+)/i.exec(s);
        if (create) {
          expect(create[1], `${m.file}: ${create[2]} must use IF NOT EXISTS`).toBeTruthy();
          expect(create[2]).toMatch(/^reshard_/);
          expect(s).toMatch(/ENGINE=InnoDB DEFAULT CHARSET=utf8mb4/);
        }
      }
    }
  });

  it('checksums ignore CRLF vs LF', () => {
    expect(checksumOf('a\r\nb\r\n')).toBe(checksumOf('a\nb\n'));
    expect(checksumOf('a\nb\n')).not.toBe(checksumOf('a\nc\n'));
  });
});

describe('compareSchema', () => {
  const m = (version: number, name: string): Migration => ({
    version,
    name,
    file: `${String(version).padStart(4, '0')}_${name}.sql`,
    checksum: checksumOf(name),
    statements: [],
  });
  const a = (mig: Migration, over: Partial<AppliedMigration> = {}): AppliedMigration => ({
    version: mig.version,
    name: mig.name,
    checksum: mig.checksum,
    appliedAt: '2024-01-01 00:00:00.000000',
    reshardVersion: '0.1.0',
    ...over,
  });
  const known = [m(1, 'core'), m(2, 'copy')];
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      return (e as ReshardError).code;
    }
    return undefined;
  };

  it('classifies uninitialised, behind and current', () => {
    expect(compareSchema(known, [], 'db')).toEqual({ kind: 'uninitialized' });
    expect(compareSchema(known, [a(known[0]!)], 'db')).toMatchObject({
      kind: 'behind',
      version: 1,
      pending: [known[1]],
    });
    expect(
      compareSchema(
        known,
        known.map((k) => a(k)),
        'db',
      ),
    ).toEqual({ kind: 'current', version: 2 });
  });

  it('refuses newer, changed and gapped histories with stable codes', () => {
    const applied = known.map((k) => a(k));
    expect(
      codeOf(() => compareSchema(known, [...applied, a(m(3, 'later'), { reshardVersion: '9.0.0' })], 'db')),
    ).toBe('E_CONTROL_TOO_NEW');
    expect(
      codeOf(() => compareSchema(known, [a(known[0]!, { checksum: 'f'.repeat(64) }), applied[1]!], 'db')),
    ).toBe('E_CONTROL_MIGRATION_CHANGED');
    expect(codeOf(() => compareSchema(known, [a(known[0]!, { name: 'renamed' }), applied[1]!], 'db'))).toBe(
      'E_CONTROL_MIGRATION_CHANGED',
    );
    expect(codeOf(() => compareSchema(known, [applied[1]!], 'db'))).toBe('E_CONTROL_MIGRATION_MISSING');
  });
});
