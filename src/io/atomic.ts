// The one crash-safe write mechanism of the project. Every file or directory is built under a
// unique temporary name in the destination's own directory (so the final rename stays within one
// filesystem and is atomic), flushed to disk, renamed into place, and the directory holding the
// new entry is flushed too (the rename lives in the directory, and without that fsync a power
// loss can forget it). Readers see the old content or the complete new one, never a half-written
// file; a crash leaves at worst a stray `.<name>.tmp-*` / `.staging-*` / `.old-*` entry beside it.
//
// Temporary names are random (96 bits), never pid-based: processes in different pid namespaces
// (containers sharing a volume) have the same pids and collided when names were built from them.
import * as fs from 'fs';
import * as path from 'path';
import * as crypto from 'crypto';

/** `.<basename>.<kind>-<random>` in the destination's directory. */
export function temporarySibling(destination: string, kind: 'tmp' | 'staging' | 'old'): string {
  const target = path.resolve(destination);
  return path.join(path.dirname(target), `.${path.basename(target)}.${kind}-${crypto.randomBytes(12).toString('hex')}`);
}

/**
 * Replaces `destination` by the file `create(temporary)` writes at the path it is given (for
 * writers that only take a path, such as the native torch.save writer). The file is flushed,
 * renamed into place and the directory flushed; on any failure the temporary file is removed.
 */
export function replaceFileAtomicSync(destination: string, create: (temporary: string) => void): void {
  const target = path.resolve(destination);
  const temporary = temporarySibling(target, 'tmp');
  let renamed = false;
  try {
    create(temporary);
    syncFile(temporary);
    fs.renameSync(temporary, target);
    renamed = true;
    syncDirectory(path.dirname(target));
  } finally {
    if (!renamed) fs.rmSync(temporary, { force: true });
  }
}

/** Replaces `destination` by everything `write` produces; `write` receives a function appending bytes. */
export function writeFileAtomicSync(
  destination: string,
  write: (append: (bytes: Uint8Array) => void) => void,
): void {
  replaceFileAtomicSync(destination, (temporary) => {
    // 'wx': fail rather than clobber if the random name somehow exists.
    const fd = fs.openSync(temporary, 'wx', 0o644);
    try {
      write((bytes) => writeFully(fd, bytes));
    } finally {
      fs.closeSync(fd);
    }
  });
}

/** Atomic replacement of `destination` by `content` (text is written as UTF-8). */
export function writeFileAtomicSyncFrom(destination: string, content: string | Uint8Array): void {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  writeFileAtomicSync(destination, (append) => append(bytes));
}

/** Writes all of `bytes` at the current position of `fd` (writeSync may write less than asked). */
export function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
  }
}

/**
 * Builds a directory in a unique staging directory beside `destination`, flushes every file in
 * it to disk, then puts it in place: a new destination appears in one rename; an existing one is
 * first renamed aside and removed only once the new one is in place. Readers see the old
 * directory or the complete new one. Concurrent writers each get their own staging directory;
 * the last rename wins.
 */
export function replaceDirectoryAtomicSync(destination: string, fill: (staging: string) => void): void {
  const target = path.resolve(destination);
  const parent = path.dirname(target);
  fs.mkdirSync(parent, { recursive: true });
  const staging = temporarySibling(target, 'staging');
  fs.mkdirSync(staging);
  let placed = false;
  try {
    fill(staging);
    syncTree(staging);
    let aside: string | undefined;
    if (fs.existsSync(target)) {
      aside = temporarySibling(target, 'old');
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

export interface UpdateDirectoryOptions {
  /**
   * Runs on an existing destination just before the staged files are moved in (e.g. to remove
   * files that the new content makes stale). Not called when the whole staging directory becomes
   * the destination.
   */
  beforeMerge?: (destination: string) => void;
}

/**
 * Adds or replaces the files `fill` writes into a staging directory, keeping the destination's
 * other files (a model directory also holds tokenizer files). The staged files are flushed
 * first. A new destination appears in one rename; an existing one (or one a concurrent writer
 * created meanwhile) receives each file by its own atomic rename, in the order `fill` returns
 * (put the file readers look for first, config.json, last). Concurrent writers never fail on
 * each other: every file in the destination is always one writer's complete file.
 */
export function updateDirectoryAtomicSync(
  destination: string,
  fill: (staging: string) => string[],
  options: UpdateDirectoryOptions = {},
): void {
  const target = path.resolve(destination);
  const parent = path.dirname(target);
  if (fs.existsSync(target) && !fs.statSync(target).isDirectory()) throw new Error(`${target} exists and is not a directory`);
  fs.mkdirSync(parent, { recursive: true });
  const staging = temporarySibling(target, 'staging');
  fs.mkdirSync(staging);
  try {
    const names = fill(staging);
    for (const name of names) {
      if (name !== path.basename(name)) throw new Error(`updateDirectoryAtomicSync: ${JSON.stringify(name)} must be a file name inside the staging directory`);
    }
    syncTree(staging);
    if (!fs.existsSync(target) && renameIfAbsent(staging, target)) {
      syncDirectory(parent);
      return;
    }
    options.beforeMerge?.(target);
    for (const name of names) fs.renameSync(path.join(staging, name), path.join(target, name));
    syncDirectory(target);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** rename(2) of a directory onto a path another writer may have just created: false when it did. */
function renameIfAbsent(from: string, to: string): boolean {
  try {
    fs.renameSync(from, to);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw error;
  }
}

function syncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// Not every platform lets a directory be opened for fsync (Windows), so a failure here is not an
// error: the file contents are already on disk, only the rename's durability is best effort.
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

function syncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) syncTree(full);
    else if (entry.isFile()) syncFile(full);
  }
  syncDirectory(dir);
}
