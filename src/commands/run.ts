/**
 * The one place a command's outcome becomes an exit code. Commands return an exit code (or
 * void for success) and throw ReshardError for anything the user must act on.
 */
import { ExitCode } from '../errors.js';
import { reportError } from '../output.js';

export interface GlobalOptions {
  json?: boolean;
}

export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<number | undefined> | number | undefined,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    // commander passes (...positionals, options, command); --json may sit on either.
    const opts = args.find(
      (a) => a !== null && typeof a === 'object' && !Array.isArray(a) && 'json' in (a as object),
    ) as GlobalOptions | undefined;
    try {
      const code = await fn(...args);
      process.exitCode = code ?? ExitCode.ok;
    } catch (err) {
      process.exitCode = reportError(err, { json: opts?.json === true });
    }
  };
}
