import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Package version; stamped into plan files and checkpoints so a foreign version is refused. */
export const VERSION: string = pkg.version;
