/**
 * Regenerate fixtures/vectors/routing.json: `npx tsx test/unit/plan/scripts/write-vectors.ts`.
 * Only after a deliberate change of the routing contract: the vectors are what deployed routers
 * are checked against, and changing them re-homes keys.
 */
import { writeFileSync } from 'node:fs';
import { routingVectors } from '../../../../src/plan/vectors.js';

const path = new URL('../../../../fixtures/vectors/routing.json', import.meta.url);
writeFileSync(path, `${JSON.stringify(routingVectors(), null, 2)}\n`);
console.log(`wrote ${path.pathname}`);
