/**
 * Start a worker thread whose module sits next to the caller's: `startWorkerBeside(import.meta.url,
 * 'scan-worker', data)`. From dist/ (and the bundle, where the workers are bundled beside the
 * chunks) it is plain JavaScript; from the TypeScript sources (tests, tsx) a small bootstrap
 * registers tsx's loader in the worker first.
 */
import { Worker } from 'node:worker_threads';

export function startWorkerBeside(callerUrl: string, name: string, workerData: unknown): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, callerUrl), { workerData });
  const entry = new URL(`./${name}.ts`, callerUrl).href;
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData });
}
