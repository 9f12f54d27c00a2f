/** Library entry: what applications may import from 'reshard'. */
export { loadTopology, parseTopology, topologyHash } from './topology/load.js';
export type * from './topology/types.js';
export { ReshardError, ExitCode } from './errors.js';
