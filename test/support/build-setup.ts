/**
 * CLI tests run bin/reshard, which runs dist/ (the bundle in dist/bundle/ when it is current):
 * rebuild both when any source file is newer, so the tests run what `npm run build` ships.
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
  const built = join(root, 'dist', 'bundle', 'cli.js');
  const newest = Math.max(
    newestMtime(join(root, 'src')),
    statSync(join(root, 'scripts', 'bundle.mjs')).mtimeMs,
  );
  if (!existsSync(built) || newest > statSync(built).mtimeMs) {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  }
}
