import type { Command } from 'commander';
import { defineInit } from './init.js';
import { definePlan } from './plan.js';
import { definePreflight } from './preflight.js';
import { defineSandbox } from './sandbox.js';
import { defineValidate } from './validate.js';

/** Only commands that exist and work are registered. */
export function registerCommands(program: Command): void {
  defineValidate(program);
  defineSandbox(program);
  definePreflight(program);
  definePlan(program);
  defineInit(program);
}
