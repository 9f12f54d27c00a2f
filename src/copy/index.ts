/** The copy stage: what commands, the tailer, verify, cutover and bench import. */
export { type CheckpointRow, type Chunk, ChunkStore, ControlSession, liveCopyWorkers } from './claims.js';
export { type CleanupSummary, type RunCleanupOptions, runCleanup } from './cleanup.js';
export { type CopyControlChange, type CopyControlState, readCopyControl, setCopyControl } from './control.js';
export {
  type BinlogPosition,
  type RecordedPosition,
  readBinlogPosition,
  readStart,
  recordStartPositions,
} from './position.js';
export { type CopyPreview, previewCopy } from './preview.js';
export {
  type CopySummary,
  type CopyTableSummary,
  defaultWorkerId,
  type RunCopyOptions,
  runCopy,
} from './run.js';
export { ChunkSizer, createThrottler, type LoadObserver, type Throttler, TokenBucket } from './throttle.js';
