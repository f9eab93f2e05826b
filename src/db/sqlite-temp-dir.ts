// SQLite writes temporary files (a sort or an index build bigger than its cache) to the first of
// SQLITE_TMPDIR, TMPDIR, /var/tmp, /usr/tmp, /tmp and the working directory it may write to. A
// container with a read-only root filesystem (`docker run --read-only`, Kubernetes'
// readOnlyRootFilesystem) has none of them writable, and such a statement failed "disk I/O error"
// (SQLITE_IOERR_GETTEMPPATH). The database's own directory is writable wherever the database works
// (its WAL lives there), so that is where they go unless the operator chose a place.
import path from 'node:path';

/**
 * Points SQLite's temporary files at `file`'s directory, unless SQLITE_TMPDIR or TMPDIR is set.
 * SQLite reads the variable once, when the process opens its first database: call it before that.
 */
export function keepSqliteTempFilesBeside(file: string): void {
  if (file === ':memory:' || process.env.SQLITE_TMPDIR || process.env.TMPDIR) return;
  // process.env writes through to the C environment, where SQLite's getenv() reads it.
  process.env.SQLITE_TMPDIR = path.dirname(path.resolve(file));
}
