// Crash-safe file writes: the content goes to a temporary file in the destination's directory,
// is flushed to disk, and only then renamed over the destination. rename(2) within one
// filesystem is atomic, so readers see either the old file or the complete new one, never a
// half-written file; a crash leaves at worst a stray `.tmp-*` file next to it.
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';

/** Writes through `fd` everything `write` produces; `write` receives a function appending bytes. */
export function writeFileAtomicSync(
  destination: string,
  write: (append: (bytes: Uint8Array) => void) => void,
): void {
  const dir = path.dirname(path.resolve(destination));
  const temporary = path.join(dir, `.${path.basename(destination)}.tmp-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
  // 'wx': fail rather than clobber if the random name somehow exists.
  const fd = fs.openSync(temporary, 'wx', 0o644);
  let closed = false;
  let renamed = false;
  try {
    write((bytes) => {
      let done = 0;
      while (done < bytes.byteLength) {
        done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
      }
    });
    fs.fsyncSync(fd);
    closed = true;
    fs.closeSync(fd);
    fs.renameSync(temporary, destination);
    renamed = true;
    syncDirectory(dir);
  } finally {
    if (!renamed) {
      if (!closed) {
        try { fs.closeSync(fd); } catch { /* the original error matters more */ }
      }
      try { fs.unlinkSync(temporary); } catch { /* never created or already gone */ }
    }
  }
}

/** Atomic replacement of `destination` by `content` (text is written as UTF-8). */
export function writeFileAtomicSyncFrom(destination: string, content: string | Uint8Array): void {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  writeFileAtomicSync(destination, (append) => append(bytes));
}

// The rename itself lives in the directory entry; without syncing the directory a power loss
// can forget it. Not every platform lets a directory be opened for fsync (Windows), so a
// failure here is not an error.
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Builds a directory in a unique staging directory beside `destination`, flushes every file in
 * it to disk, then puts it in place: a new destination appears in one rename; an existing one is
 * first renamed aside and removed only once the new one is in place. Readers see the old
 * directory or the complete new one; a crash leaves at worst a stray `.staging-*` or `.old-*`
 * directory beside it. Concurrent writers each get their own staging directory; the last rename wins.
 */
export function replaceDirectoryAtomicSync(destination: string, fill: (staging: string) => void): void {
  const target = path.resolve(destination);
  const parent = path.dirname(target);
  fs.mkdirSync(parent, { recursive: true });
  const unique = () => `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  const staging = path.join(parent, `.${path.basename(target)}.staging-${unique()}`);
  fs.mkdirSync(staging);
  let placed = false;
  try {
    fill(staging);
    syncTree(staging);
    let aside: string | undefined;
    if (fs.existsSync(target)) {
      aside = path.join(parent, `.${path.basename(target)}.old-${unique()}`);
      fs.renameSync(target, aside);
    }
    fs.renameSync(staging, target);
    placed = true;
    syncDirectory(parent);
    if (aside) fs.rmSync(aside, { recursive: true, force: true });
  } finally {
    if (!placed) fs.rmSync(staging, { recursive: true, force: true });
  }
}

function syncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      syncTree(full);
    } else if (entry.isFile()) {
      const fd = fs.openSync(full, 'r');
      try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    }
  }
  syncDirectory(dir);
}
