/**
 * Reading a cutover attempt back (pure): the begin row's journal format decides whether this
 * binary reads it at all, and every detail it reads is validated, so another version's attempt
 * or a malformed row is refused instead of being read as "nothing frozen".
 */
import { describe, expect, it } from 'vitest';
import {
  checkAttempt,
  checkJournal,
  JOURNAL_FORMAT,
  type JournalRow,
  lastAttempt,
  stepDetail,
} from '../../../src/cutover/journal.js';
import { VERSION } from '../../../src/version.js';

const server = {
  key: 'k0',
  address: '127.0.0.1:1',
  via: { side: 'from', shard: 's0' },
  shards: ['s0'],
  inPlace: false,
  priorReadOnly: false,
};

function rows(begin: Record<string, unknown>, freeze: Record<string, unknown>): JournalRow[] {
  return [
    { id: 1, step: 'cutover.begin', state: 'started', detail: { attempt: 1, ...begin }, at: 't1' },
    { id: 2, step: 'cutover.freeze', state: 'started', detail: freeze, at: 't2' },
  ];
}

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('cutover journal format', () => {
  it('reads an attempt of this format, and one this version wrote before the field existed', () => {
    for (const begin of [{ format: JOURNAL_FORMAT, reshard: VERSION }, { reshard: VERSION }, {}]) {
      const a = lastAttempt(rows(begin, { servers: [server], startedAtMs: 1 }), 'cutover')!;
      expect(() => checkAttempt(a)).not.toThrow();
      expect(stepDetail(a, 'freeze', 'started')?.servers).toEqual([server]);
    }
  });

  it('refuses another format, or a begin row of another version without one, naming the writer', () => {
    for (const begin of [
      { format: JOURNAL_FORMAT + 1, reshard: '99.0.0' },
      { reshard: '99.0.0' },
      { format: 'one', reshard: '99.0.0' },
    ]) {
      const a = lastAttempt(rows(begin, { servers: [server], startedAtMs: 1 }), 'cutover')!;
      expect(codeOf(() => checkAttempt(a))).toBe('E_JOURNAL_FORMAT');
      expect(codeOf(() => stepDetail(a, 'freeze', 'started'))).toBe('E_JOURNAL_FORMAT');
      try {
        checkAttempt(a);
      } catch (e) {
        expect((e as Error).message).toMatch(/reshard 99\.0\.0/);
        expect((e as { hint?: string }).hint).toMatch(/reshard 99\.0\.0/);
        expect((e as { exitCode?: number }).exitCode).toBe(3);
      }
    }
  });

  it('refuses a malformed detail instead of reading it as empty', () => {
    for (const freeze of [
      { frozenServers: [server], startedAtMs: 1 },
      { servers: [{ ...server, priorReadOnly: 'no' }], startedAtMs: 1 },
      { servers: [server] },
    ]) {
      const a = lastAttempt(rows({ format: JOURNAL_FORMAT, reshard: VERSION }, freeze), 'cutover')!;
      expect(codeOf(() => checkAttempt(a))).toBe('E_JOURNAL_DETAIL');
    }
  });

  it('checks open attempts only, unless asked for an ended one', () => {
    const r = [
      ...rows({ format: JOURNAL_FORMAT + 1, reshard: '99.0.0' }, { frozenServers: [] }),
      { id: 3, step: 'cutover.end', state: 'aborted', detail: {}, at: 't3' } as JournalRow,
    ];
    expect(() => checkJournal(r, ['cutover', 'rollback', 'reads'])).not.toThrow();
    expect(codeOf(() => checkJournal(r, ['rollback'], [lastAttempt(r, 'cutover')]))).toBe('E_JOURNAL_FORMAT');
    expect(codeOf(() => checkJournal(r.slice(0, 2), ['cutover']))).toBe('E_JOURNAL_FORMAT');
  });
});
