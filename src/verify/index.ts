/**
 * The verifier's public surface. See README.md for the encoding, the bucket math and the
 * incremental semantics.
 */
export { BloomFilter, bloomSize, falsePositiveRate } from './bloom.js';
export {
  BucketSums,
  bucketId,
  CHANGE_BITS,
  changeIdOf,
  chooseBits,
  mismatchedBuckets,
  pkHashOfValues,
  pkHashRaw,
  splitBucketId,
  subOf,
} from './bucket.js';
export {
  addChanges,
  type ChangedRow,
  ChangeSet,
  changeIdOfPk,
  loadChangeSet,
  openEpoch,
  recordChanges,
} from './changes.js';
export { crc64Hex } from './crc64.js';
export { renderFixSql, splitFixSql } from './fixsql.js';
export type { RowReport, TableReport, VerifyReport } from './report.js';
export { renderVerifyReport } from './report.js';
export { canonicalBytes, encodeRow, type RawRow, RowHasher } from './rowhash.js';
export { assertVerified, runVerify, type VerifyOptions, type VerifyProgress } from './verifier.js';

import { thousands } from '../util/format.js';
import type { VerifyProgress } from './verifier.js';

/**
 * Progress on stderr: a rewritten line on a TTY, otherwise a line every 5 seconds and at each
 * phase change.
 */
export function progressPrinter(write: (line: string) => void): (p: VerifyProgress) => void {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let lastPhase = '';
  const t0 = Date.now();
  return (p) => {
    const now = Date.now();
    const phaseChanged = p.phase !== lastPhase;
    if (!phaseChanged && now - last < (tty ? 200 : 5000)) return;
    last = now;
    lastPhase = p.phase;
    const secs = (now - t0) / 1000;
    let line: string;
    if (p.phase === 'scan') {
      const pct =
        p.estimatedRows > 0 ? ` (~${Math.min(99, Math.floor((100 * p.rows) / p.estimatedRows))}%)` : '';
      line = `verify: read ${thousands(p.rows)} rows${pct}, ${thousands(p.rows / Math.max(secs, 0.001))} rows/s`;
    } else {
      line = `verify: ${p.phase}${p.message ? `: ${p.message}` : ''}`;
    }
    if (tty) process.stderr.write(`\r\x1b[K${line}${p.phase === 'done' ? '\n' : ''}`);
    else write(line);
  };
}
