/**
 * Rules shared by every DSN reshard reads (a shard's `dsn:` in a topology, the control DSN): a
 * DSN never carries a password, since argv is visible in `ps` and topology files are copied
 * around; passwords come from an environment variable or a file.
 */

/** A query parameter the driver (or a person) would read as a password, in any case. */
export function isPasswordParam(key: string): boolean {
  return /^(password|passwd|pwd)$/i.test(key);
}

/**
 * Whether a DSN carries a password, in its userinfo or its query. Text that is not a mysql:// or
 * mariadb:// URL cannot be checked (`user:pw@host` parses as scheme `user:`), so it counts as
 * carrying one.
 */
export function dsnMayCarryPassword(dsn: string): boolean {
  let url: URL;
  try {
    url = new URL(dsn);
  } catch {
    return true;
  }
  if (!/^(mysql|mariadb):$/.test(url.protocol) || url.password) return true;
  for (const key of url.searchParams.keys()) if (isPasswordParam(key)) return true;
  return false;
}
