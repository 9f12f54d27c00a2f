/**
 * CLI tests run bin/reshard, which runs dist/: rebuild it when any source file is newer.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  const root = join(import.meta.dirname, '..', '..');
  const distCli = join(root, 'dist', 'cli.js');
  if (!existsSync(distCli) || newestMtime(join(root, 'src')) > statSync(distCli).mtimeMs) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  }
}
