/**
 * The change source on a thread of its own: the same ZongjiSource (source.ts), run in a worker
 * thread, its events handed over in batches. The tailer's thread then only routes and applies.
 *
 * Why: reading and decoding the binlog (zongji: packet parsing, TableMap metadata, row images)
 * was about a third of the tailer's CPU, the garbage it leaves another seventh, all on the
 * thread that also applies. On a busy host that one thread is what falls behind: a fresh tailer
 * meeting a live load on a 2-core machine at 95 % CPU pressure stopped applying for 5–6 s while
 * it decoded. On its own thread decoding overlaps applying, and under the kernel's fair
 * scheduler a second runnable thread gets a second share of the CPU.
 *
 * Contract: exactly ZongjiSource's (start, next, stop; the same events, errors, order and
 * memory bound). Flow control is by credit: the worker takes events from its source only while
 * it holds credit (rows, as the source weighs them), and the credit comes back as `next()`
 * hands events to the tailer. So at most `maxBufferedRows` rows are in flight between the
 * threads, plus the worker's own source buffer (half each); past that the worker's source
 * pauses the socket, as a ZongjiSource would.
 *
 * Structured clone copies a typed array's whole ArrayBuffer, and turns a Buffer into a plain
 * Uint8Array: the worker copies each Buffer value into one of its exact size before posting
 * (zongji's values are often views of a large packet), and this side makes them Buffers again.
 */
import type { Worker } from 'node:worker_threads';
import { startWorkerBeside } from '../util/worker.js';
import type { BinlogPosition } from './position.js';
import {
  type BufferedChangeSource,
  type ChangeEvent,
  EventQueue,
  type RawImage,
  StreamError,
  type ZongjiSourceOptions,
} from './source.js';

/** Main → worker. */
export type ToSourceWorker =
  | { type: 'start'; from: BinlogPosition }
  | { type: 'credit'; rows: number }
  | { type: 'stop' };

/** Worker → main. */
export type FromSourceWorker =
  | { type: 'started'; lastMessage: number }
  | { type: 'events'; events: ChangeEvent[]; lastMessage: number }
  | { type: 'alive'; lastMessage: number }
  | { type: 'failed'; error: SerializedStreamError; lastMessage: number }
  | { type: 'stopped' };

/** What the tailer reads of a stream error (message, errno, code; mysql2's `fatal` for retrying). */
export interface SerializedStreamError {
  message: string;
  errno?: number | undefined;
  code?: string | undefined;
  fatal?: boolean | undefined;
}

export function serializeStreamError(e: unknown): SerializedStreamError {
  const err = e as { message?: unknown; errno?: unknown; code?: unknown; fatal?: unknown };
  return {
    message: typeof err?.message === 'string' ? err.message : String(e),
    ...(typeof err?.errno === 'number' ? { errno: err.errno } : {}),
    ...(typeof err?.code === 'string' ? { code: err.code } : {}),
    ...(err?.fatal === true ? { fatal: true } : {}),
  };
}

/** The error on this side: a StreamError, with mysql2's `fatal` mark where the driver set it. */
export function reviveStreamError(e: SerializedStreamError): StreamError {
  const err = new StreamError(e.message, e.errno, e.code);
  if (e.fatal) Object.assign(err, { fatal: true });
  return err;
}

/** An image's Buffer values as exact-size Uint8Arrays (what survives a postMessage cheaply). */
export function packImage(img: RawImage | undefined): void {
  if (!img) return;
  for (const k in img) {
    const v = img[k];
    if (v instanceof Uint8Array) img[k] = new Uint8Array(v);
  }
}

/** An image's Uint8Array values as Buffers again (what the decoder and applier expect). */
export function unpackImage(img: RawImage | undefined): void {
  if (!img) return;
  for (const k in img) {
    const v = img[k];
    if (v instanceof Uint8Array && !Buffer.isBuffer(v))
      img[k] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
}

/** Start the reader thread (source-worker.ts, beside this module). */
function startWorker(opts: ZongjiSourceOptions): Worker {
  return startWorkerBeside(import.meta.url, 'source-worker', opts);
}

/** How long stop() waits for the worker to close its stream before terminating it. */
const STOP_WAIT_MS = 3000;

export class ThreadedSource implements BufferedChangeSource {
  private worker: Worker | undefined;
  /** Credit given back by events that left the queue, not yet returned to the worker. */
  private owed = 0;
  private readonly credit: number;
  private readonly events = new EventQueue((rows) => this.giveBack(rows));
  private stopped = false;
  private onStopped: (() => void) | undefined;
  private lastMessageAt = Date.now();
  private exited: Promise<void> | undefined;

  constructor(private readonly opts: ZongjiSourceOptions) {
    const max = opts.maxBufferedRows ?? 20_000;
    this.credit = Math.max(1, Math.floor(max / 2));
  }

  get bufferedRows(): number {
    return this.events.bufferedRows;
  }

  get lastMessage(): number {
    return this.lastMessageAt;
  }

  oldestBuffered(): ChangeEvent | undefined {
    return this.events.oldest();
  }

  async start(from: BinlogPosition): Promise<void> {
    if (this.stopped) throw new StreamError('the stream was stopped', undefined, 'STOPPED');
    const w = startWorker({ ...this.opts, maxBufferedRows: this.credit });
    this.worker = w;
    this.exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    const started = new Promise<void>((resolve, reject) => {
      w.on('message', (m: FromSourceWorker) => {
        if (m.type !== 'stopped') this.lastMessageAt = Math.max(this.lastMessageAt, m.lastMessage);
        switch (m.type) {
          case 'started':
            resolve();
            return;
          case 'events':
            for (const e of m.events) this.push(e);
            return;
          case 'alive':
            return;
          case 'failed': {
            const err = reviveStreamError(m.error);
            reject(err);
            this.fail(err);
            return;
          }
          case 'stopped':
            return;
        }
      });
      w.on('error', (e) => {
        const err = new StreamError(
          `the binlog reader thread failed: ${e.message}`,
          undefined,
          'E_SOURCE_THREAD',
          {
            cause: e,
          },
        );
        reject(err);
        this.fail(err);
      });
      w.on('exit', (code) => {
        if (this.stopped) return;
        const err = new StreamError(
          `the binlog reader thread exited (code ${code})`,
          undefined,
          'E_SOURCE_THREAD',
        );
        reject(err);
        this.fail(err);
      });
    });
    // stop() during the handshake must not leave start() waiting for a 'started' that never comes.
    const stopped = new Promise<void>((resolve) => {
      this.onStopped = resolve;
    });
    w.postMessage({ type: 'start', from } satisfies ToSourceWorker);
    w.postMessage({ type: 'credit', rows: this.credit } satisfies ToSourceWorker);
    await Promise.race([started, stopped]);
    if (this.stopped) throw new StreamError('the stream was stopped', undefined, 'STOPPED');
  }

  next(): Promise<ChangeEvent> {
    return this.events.next();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.onStopped?.();
    this.events.close();
    const w = this.worker;
    if (!w) return;
    const closed = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, STOP_WAIT_MS);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      w.on('message', (m: FromSourceWorker) => {
        if (m.type === 'stopped') done();
      });
      void this.exited?.then(done);
    });
    try {
      w.postMessage({ type: 'stop' } satisfies ToSourceWorker);
    } catch {
      // already gone
    }
    await closed;
    await w.terminate();
  }

  /** Return credit to the worker: in quarters of it, or at once when the tailer has nothing left. */
  private giveBack(rows: number): void {
    this.owed += rows;
    if (this.owed >= this.credit / 4 || this.events.isEmpty) {
      const n = this.owed;
      this.owed = 0;
      this.worker?.postMessage({ type: 'credit', rows: n } satisfies ToSourceWorker);
    }
  }

  private push(e: ChangeEvent): void {
    if (e.kind === 'transaction')
      for (const c of e.changes) {
        unpackImage(c.before);
        unpackImage(c.after);
      }
    this.events.push(e);
  }

  private fail(e: Error): void {
    if (!this.stopped) this.events.fail(e);
  }
}
