import { describe, expect, it } from 'vitest';
import {
  checkTransition,
  isTerminal,
  JOB_STATES,
  JOB_TRANSITIONS,
  type JobState,
} from '../../../src/state/control.js';

const FORWARD: JobState[] = ['planned', 'copying', 'catching-up', 'verified', 'cut-over', 'completed'];

describe('job state machine', () => {
  it('moves forward exactly one step at a time', () => {
    for (const [i, from] of FORWARD.entries()) {
      for (const [j, to] of FORWARD.entries()) {
        if (j === i + 1) expect(() => checkTransition(from, to)).not.toThrow();
        else
          expect(() => checkTransition(from, to)).toThrow(
            expect.objectContaining({ code: 'E_JOB_ILLEGAL_TRANSITION' }),
          );
      }
    }
  });

  it('cancels only before cutover and rolls back only once a cutover began', () => {
    for (const s of JOB_STATES) {
      expect(JOB_TRANSITIONS[s].includes('cancelled')).toBe(
        ['planned', 'copying', 'catching-up', 'verified'].includes(s),
      );
      expect(JOB_TRANSITIONS[s].includes('rolled-back')).toBe(['verified', 'cut-over'].includes(s));
    }
  });

  it('has completed, rolled-back and cancelled as the only terminal states, reachable from planned', () => {
    expect(JOB_STATES.filter(isTerminal)).toEqual(['completed', 'rolled-back', 'cancelled']);
    const seen = new Set<JobState>(['planned']);
    const queue: JobState[] = ['planned'];
    while (queue.length)
      for (const n of JOB_TRANSITIONS[queue.shift()!]) if (!seen.has(n) && seen.add(n)) queue.push(n);
    expect([...seen].sort()).toEqual([...JOB_STATES].sort());
  });

  it('names the allowed next states in the error', () => {
    expect(() => checkTransition('copying', 'completed', "job 'x'")).toThrow(
      /job 'x': cannot go from 'copying' to 'completed'; .*'catching-up' or 'cancelled'/,
    );
  });
});
