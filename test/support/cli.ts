/**
 * Running `bin/reshard` as a child process from integration tests: one spawner, so every suite
 * collects output, exit code and signal the same way.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Start `bin/reshard …`; `done` settles when it exits. RESHARD_LOG_LEVEL defaults to `logLevel`. */
export function startReshard(args: string[], env: Record<string, string> = {}, logLevel = 'warn') {
  const child = spawn(process.execPath, [join(ROOT, 'bin/reshard'), ...args], {
    cwd: ROOT,
    env: { ...process.env, RESHARD_LOG_LEVEL: logLevel, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<CliResult>((res) =>
    child.on('close', (code, signal) => res({ code, signal, stdout, stderr })),
  );
  return { child, done };
}
