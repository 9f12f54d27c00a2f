/**
 * Starts real sandbox servers once for the whole test run, on free loopback ports in a temp
 * directory, and removes them afterwards. Tests get the ports through `inject('sandbox')` and
 * create their own fresh databases (see ./db.ts), so files can run in parallel.
 *
 * RESHARD_TEST_SANDBOX_DIR reuses a sandbox across runs while developing (it is then left up).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { readManifest, sandboxDown, sandboxUp } from '../../src/sandbox/instances.js';

export const NAMES = ['ctl', 's0', 's1', 't0', 't1', 't2'] as const;

function free(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

async function findBasePort(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below Linux's ephemeral range (32768–60999): a client connection's local end never takes
    // a sandbox port while its server restarts.
    const base = 20000 + Math.floor(Math.random() * 1000) * 10;
    const ok = await Promise.all(Array.from({ length: count }, (_, i) => free(base + i)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no free block of loopback ports for the test sandbox');
}

export default async function setup(project: TestProject) {
  const reuse = process.env.RESHARD_TEST_SANDBOX_DIR;
  const dir = reuse ?? mkdtempSync(join(tmpdir(), 'reshard-test-'));
  const existing = reuse ? readManifest(dir) : undefined;
  const basePort = existing?.instances[0]?.port ?? (await findBasePort(NAMES.length));
  const manifest = await sandboxUp({ dir, names: [...NAMES], basePort });
  const ports = Object.fromEntries(manifest.instances.map((i) => [i.name, i.port])) as Record<
    (typeof NAMES)[number],
    number
  >;
  project.provide('sandbox', { dir, ports });
  return async () => {
    if (reuse) return;
    await sandboxDown(dir, { purge: true });
    rmSync(dir, { recursive: true, force: true });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    sandbox: { dir: string; ports: Record<'ctl' | 's0' | 's1' | 't0' | 't1' | 't2', number> };
  }
}
