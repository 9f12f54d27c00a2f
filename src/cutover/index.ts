/** Cutover and rollback: what commands, tests and applications import. See README.md. */

export { tailLockName } from '../binlog/status.js';
export { type CompleteOptions, type CompleteResult, runComplete } from './complete.js';
export {
  type Check,
  type CutoverOptions,
  type CutoverResult,
  runCutover,
  type ServerSummary,
} from './cutover.js';
export { Drainer, movingPairs, type Pair, positionKey } from './drain.js';
export type { ServerRecord, StepTiming, SwitchOutcome } from './engine.js';
export { type Attempt, type JournalRow, lastAttempt, type Op, readJournal } from './journal.js';
export { fmtMs, type Prediction, parseDurationMs, predictFreeze } from './predict.js';
export { type PurgeSummary, purgeTargets } from './purge.js';
export { type RollbackOptions, type RollbackResult, runRollback } from './rollback.js';
export { type ActiveKind, canaryPairs, classifyActive, fullRouting, readsRouting } from './routing.js';
export { type FreezeServer, freezeSet } from './servers.js';
