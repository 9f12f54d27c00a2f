import { existsSync, readFileSync } from 'node:fs';

/**
 * package.json of this package: one level up from dist/version.js (and src/version.ts), two from
 * the bundle in dist/bundle/ (scripts/bundle.mjs), so both are tried.
 */
function packageJson(): URL {
  const near = new URL('../package.json', import.meta.url);
  return existsSync(near) ? near : new URL('../../package.json', import.meta.url);
}

const pkg = JSON.parse(readFileSync(packageJson(), 'utf8')) as { version: string };

/** Package version; stamped into plan files and checkpoints so a foreign version is refused. */
export const VERSION: string = pkg.version;
