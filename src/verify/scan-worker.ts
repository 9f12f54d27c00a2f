/**
 * A scan worker thread (see scan-pool.ts): rebuilds the routing from the plan and topologies it
 * is started with, then runs each (shard, table) scan it is handed and posts the partial sums.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { indexPlan } from '../plan/plan-index.js';
import { buildRouting } from './routing.js';
import { scanPart, scanPartData } from './scan-part.js';
import { serializeError, type WorkerInit, type WorkerMessage, type WorkerRequest } from './scan-pool.js';

const init = workerData as WorkerInit;
const routing = buildRouting(indexPlan(init.plan, init.from, init.to), init.from, init.to);
const port = parentPort!;
const post = (m: WorkerMessage, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

port.on('message', (req: WorkerRequest) => {
  const shard = routing.shards.get(req.shard);
  void (async () => {
    try {
      if (!shard) throw new Error(`unknown shard ${req.shard}`);
      const part = await scanPart(shard, req.plan, routing, req.pageSize, req.maxMisplaced, (n) =>
        post({ type: 'tick', n }),
      );
      const data = scanPartData(part);
      post({ type: 'done', id: req.id, part: data }, [
        data.source.count.buffer,
        data.source.hi.buffer,
        data.source.lo.buffer,
        data.target.count.buffer,
        data.target.hi.buffer,
        data.target.lo.buffer,
      ] as ArrayBuffer[]);
    } catch (e) {
      post({ type: 'error', id: req.id, error: serializeError(e) });
    }
  })();
});
