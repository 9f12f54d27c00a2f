export {
  accountForSql,
  canonicalPrivilege,
  type GrantEntry,
  hasPrivilege,
  parseGrantLine,
  parseGrants,
  readGrantLines,
} from './grants.js';
export { renderReport, renderReportTable } from './render.js';
export { assertPreflight, DEFAULT_ROLES, type PreflightOptions, runPreflight } from './run.js';
export {
  type ColumnDefault,
  type ColumnDefinition,
  columnSql,
  diffTableDefinitions,
  type IndexDefinition,
  isBinaryType,
  isIntegerType,
  isStringType,
  readTableDefinition,
  readTableDefinitions,
  requireTableDefinition,
  requireTableDefinitions,
  type SchemaDifference,
  type TableDefinition,
} from './schema.js';
export {
  judgeBinlogSettings,
  judgeVersion,
  parseServerVersion,
  readServerInfo,
  type ServerInfo,
  type ServerVersion,
} from './server.js';
export * from './types.js';
