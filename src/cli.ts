/**
 * CLI entry: wires commander to the command modules. Each command module only parses,
 * validates, calls one service and renders; services are imported lazily so `reshard --help`
 * and small commands start fast.
 */
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';
import { ExitCode } from './errors.js';
import { reportError } from './output.js';
import { VERSION } from './version.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('reshard')
    .description('Move a live, sharded MySQL/MariaDB estate from N shards to M shards.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerCommands(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; parse errors are usage errors (commander already printed them).
      return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    return reportError(err, { json: argv.includes('--json') });
  }
  return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
}
