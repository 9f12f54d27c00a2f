import type { Command } from 'commander';
import { defineCleanup } from './cleanup.js';
import { defineComplete } from './complete.js';
import { defineCopy } from './copy.js';
import { defineCutover } from './cutover.js';
import { defineDemo } from './demo.js';
import { defineInit } from './init.js';
import { definePlan } from './plan.js';
import { definePreflight } from './preflight.js';
import { defineRollback } from './rollback.js';
import { defineRoute } from './route.js';
import { defineSandbox } from './sandbox.js';
import { defineStatus } from './status.js';
import { defineTail } from './tail.js';
import { defineValidate } from './validate.js';
import { defineVerify } from './verify.js';

/** Only commands that exist and work are registered. */
export function registerCommands(program: Command): void {
  defineValidate(program);
  defineSandbox(program);
  definePreflight(program);
  definePlan(program);
  defineInit(program);
  defineCopy(program);
  defineCleanup(program);
  defineTail(program);
  defineVerify(program);
  defineCutover(program);
  defineRollback(program);
  defineComplete(program);
  defineStatus(program);
  defineRoute(program);
  defineDemo(program);
}
