import type { Command } from 'commander';
import { defineSandbox } from './sandbox.js';
import { defineValidate } from './validate.js';

/** Only commands that exist and work are registered. */
export function registerCommands(program: Command): void {
  defineValidate(program);
  defineSandbox(program);
}
