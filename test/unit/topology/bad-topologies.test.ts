/**
 * Every malformed topology in fixtures/bad-topologies is rejected with exactly the issues its
 * `.expected.json` lists: code, field path, `:line`, and message and fix substrings. An extra
 * issue fails too, so a rule that starts double-reporting is caught.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError, type ValidationIssue } from '../../../src/errors.js';
import { loadTopology } from '../../../src/topology/load.js';

const DIR = 'fixtures/bad-topologies';

interface ExpectedIssue {
  /** File the issue is in when it is not the topology itself (a directory CSV). */
  file?: string;
  path: string;
  /** The `:line` suffix of the issue's file; null when the issue has no line. */
  line: number | null;
  messageIncludes: string;
  hintIncludes?: string;
}

interface Expected {
  code: string;
  issues: ExpectedIssue[];
}

const cases = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => ({
    name: f.replace(/\.yaml$/, ''),
    file: join(DIR, f),
    expected: JSON.parse(readFileSync(join(DIR, f.replace(/\.yaml$/, '.expected.json')), 'utf8')) as Expected,
  }));

function load(file: string): ValidationError {
  try {
    loadTopology(file);
  } catch (e) {
    if (e instanceof ValidationError) return e;
    throw e;
  }
  throw new Error(`${file} loaded without error`);
}

function matches(actual: ValidationIssue, want: ExpectedIssue, topologyFile: string): boolean {
  const file = want.file ? join(DIR, want.file) : topologyFile;
  return (
    actual.file === (want.line === null ? file : `${file}:${want.line}`) &&
    actual.path === want.path &&
    actual.message.includes(want.messageIncludes) &&
    (want.hintIncludes === undefined || (actual.hint ?? '').includes(want.hintIncludes))
  );
}

describe('malformed topologies', () => {
  it('has enough cases, each with an expectation', () => {
    expect(cases.length).toBeGreaterThanOrEqual(14);
  });

  it.each(cases)('$name', ({ file, expected }) => {
    const err = load(file);
    expect(err.code).toBe(expected.code);
    expect(err.exitCode).toBe(2);
    // Exact count first: the list below then proves a one-to-one match.
    expect(err.issues, JSON.stringify(err.issues, null, 2)).toHaveLength(expected.issues.length);
    const unused = [...err.issues];
    for (const want of expected.issues) {
      const at = unused.findIndex((a) => matches(a, want, file));
      expect(
        at,
        `no issue matches ${JSON.stringify(want)} in\n${JSON.stringify(unused, null, 2)}`,
      ).toBeGreaterThanOrEqual(0);
      unused.splice(at, 1);
    }
    // Every issue must tell the user what to do.
    for (const i of err.issues) expect(i.hint ?? '', `${i.path}: ${i.message}`).not.toBe('');
    // The rendered message names file, path and fix for every issue.
    for (const i of err.issues) {
      expect(err.message).toContain(`${i.file}: ${i.path || '(root)'}: ${i.message}`);
      expect(err.message).toContain(`fix: ${i.hint}`);
    }
  });

  it('never echoes a secret', () => {
    for (const f of ['06-inline-password.yaml', '07-password-in-dsn.yaml', '22-password-in-dsn-query.yaml']) {
      const err = load(join(DIR, f));
      expect(JSON.stringify({ message: err.message, issues: err.issues })).not.toContain('hunter2');
    }
  });
});
