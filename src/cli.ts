/**
 * CLI entry: wires commander to the command modules. Each command module only parses,
 * validates, calls one service and renders; services are imported lazily so `reshard --help`
 * and small commands start fast.
 */
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';
import { ExitCode, UsageError } from './errors.js';
import { reportError } from './output.js';
import { VERSION } from './version.js';

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const program = new Command('reshard')
    .description('Move a live, sharded MySQL/MariaDB estate from N shards to M shards.')
    .version(VERSION, '-V, --version')
    .exitOverride();
  // Set before the commands are registered: subcommands copy these settings when created.
  if (json) {
    // A script reads one JSON document; reportError writes it and the human line on stderr.
    program.configureOutput({ outputError: () => undefined });
  } else {
    program.showHelpAfterError('(run with --help for usage)');
  }
  registerCommands(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0.
      if (err.exitCode === 0) return ExitCode.ok;
      // Without --json commander has already printed the error; with it, say it as JSON.
      if (!json) return ExitCode.usage;
      return reportError(usageErrorOf(err, program, argv), { json });
    }
    return reportError(err, { json });
  }
  return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
}

/** A flag error commander found (unknown option, missing option or argument) as E_USAGE. */
function usageErrorOf(err: CommanderError, program: Command, argv: string[]): UsageError {
  // 'commander.help': no command given; commander printed the help on stderr.
  const message = err.code === 'commander.help' ? 'no command given' : err.message.replace(/^error: /, '');
  const first = argv.find((a) => !a.startsWith('-'));
  const command = program.commands.find((c) => c.name() === first);
  return new UsageError('E_USAGE', message, {
    hint: `run \`reshard ${command ? `${command.name()} ` : ''}--help\` for usage`,
  });
}
