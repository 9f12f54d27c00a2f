/**
 * The binlog reader thread (see source-thread.ts): one ZongjiSource, started where the main
 * thread says, its events posted in batches while the main thread's credit lasts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type ChangeEvent, weight, ZongjiSource, type ZongjiSourceOptions } from './source.js';
import {
  type FromSourceWorker,
  packImage,
  serializeStreamError,
  type ToSourceWorker,
} from './source-thread.js';

const port = parentPort!;
const src = new ZongjiSource(workerData as ZongjiSourceOptions);
const post = (m: FromSourceWorker) => port.postMessage(m);

/** Events per message at most: a backlog still reaches the tailer in steady portions. */
const BATCH = 500;
/** While nothing else is posted, the time of the last event or heartbeat goes over this often. */
const ALIVE_MS = 500;

let credit = 0;
let started = false;
let stopping = false;
let pumping = false;
let failed = false;

const alive = setInterval(() => {
  if (started && !stopping) post({ type: 'alive', lastMessage: src.lastMessage });
}, ALIVE_MS);

function flush(batch: ChangeEvent[]): void {
  if (batch.length === 0) return;
  for (const e of batch)
    if (e.kind === 'transaction')
      for (const c of e.changes) {
        packImage(c.before);
        packImage(c.after);
      }
  post({ type: 'events', events: batch, lastMessage: src.lastMessage });
}

/** Move events from the source to the main thread while there is credit for them. */
async function pump(): Promise<void> {
  if (pumping || !started || failed) return;
  pumping = true;
  let batch: ChangeEvent[] = [];
  try {
    while (credit > 0 && !stopping) {
      // About to wait for the server: hand over what is here first.
      if (src.bufferedRows === 0 || batch.length >= BATCH) {
        flush(batch);
        batch = [];
      }
      const e = await src.next();
      credit -= weight(e);
      batch.push(e);
    }
    flush(batch);
  } catch (e) {
    flush(batch);
    if (!stopping) {
      failed = true;
      post({ type: 'failed', error: serializeStreamError(e), lastMessage: src.lastMessage });
    }
  } finally {
    pumping = false;
  }
}

port.on('message', (m: ToSourceWorker) => {
  switch (m.type) {
    case 'start':
      src.start(m.from).then(
        () => {
          started = true;
          post({ type: 'started', lastMessage: src.lastMessage });
          void pump();
        },
        (e: unknown) => {
          failed = true;
          post({ type: 'failed', error: serializeStreamError(e), lastMessage: src.lastMessage });
        },
      );
      return;
    case 'credit':
      credit += m.rows;
      void pump();
      return;
    case 'stop':
      stopping = true;
      clearInterval(alive);
      void src.stop().finally(() => {
        post({ type: 'stopped' });
        port.close();
      });
      return;
  }
});
