// Durability of renames: a file's data is synced with its handle, but a rename lives in its
// parent directory, which must be synced too or a power cut can undo a committed write.
import fs from 'node:fs/promises';

export async function syncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    // Some platforms (Windows) and file systems cannot fsync a directory: durability there is
    // what the OS gives; a write must not fail for it.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}
