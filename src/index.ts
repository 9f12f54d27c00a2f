/** Library entry: what applications may import from 'reshard'. */

export { ExitCode, ReshardError } from './errors.js';
export { createRouter, type RouteKey, type Router } from './plan/router.js';
export { type FollowingRouter, type FollowRoutingOptions, followActiveRouting } from './status/follow.js';
export {
  createRoutingRouter,
  parseRouting,
  type RoutingDocument,
  type RoutingRouter,
  routingFromTopology,
} from './status/routing.js';
export { loadTopology, parseTopology, topologyHash } from './topology/load.js';
export type * from './topology/types.js';
