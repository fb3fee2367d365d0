// An exclusive lock on an output directory, so that two runs writing into it (two `prepare` into one
// --output) cannot delete or overwrite each other's files: the second fails at once with an error
// naming the directory and the holder.
//
// The lock is a file whose content (holder pid, host, start time) is complete before it appears:
// it is written under a unique temporary name and hard-linked to the lock name, and link(2) fails
// when the name exists. A lock left by a process that died (same host, pid gone) is taken over.
import { hostname } from 'os';
import { join } from 'path';
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'fs';
import { temporarySibling } from '../io/atomic';

export interface LockHolder {
  pid: number;
  host: string;
  since: string;
  purpose: string;
}

export class DirectoryLockedError extends Error {
  constructor(readonly directory: string, readonly lockFile: string, readonly holder: LockHolder | undefined) {
    super(holder
      ? `${directory} is in use by another ${holder.purpose} run (pid ${holder.pid} on ${holder.host}, since ${holder.since}); wait for it to finish, or delete ${lockFile} if that run is gone`
      : `${directory} is in use by another run (${lockFile} exists but names no holder); delete it if no run is writing there`);
  }
}

function readHolder(lockFile: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(readFileSync(lockFile, 'utf8')) as LockHolder;
    return typeof holder.pid === 'number' && typeof holder.host === 'string' ? holder : undefined;
  } catch {
    return undefined;
  }
}

function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface DirectoryLock {
  readonly lockFile: string;
  release(): void;
}

/**
 * Takes `directory`'s lock (`.lock` inside it; the directory must exist) or throws
 * DirectoryLockedError. The lock is released by `release()` or when the process exits.
 */
export function lockDirectory(directory: string, purpose: string): DirectoryLock {
  const lockFile = join(directory, '.lock');
  const holder: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), purpose };
  const content = JSON.stringify(holder) + '\n';
  for (let attempt = 0; ; attempt++) {
    const temporary = temporarySibling(lockFile, 'tmp');
    writeFileSync(temporary, content, { flag: 'wx' });
    try {
      linkSync(temporary, lockFile);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      rmSync(temporary, { force: true });
    }
    const current = readHolder(lockFile);
    const stale = current !== undefined && current.host === holder.host && current.pid !== process.pid && processIsGone(current.pid);
    if (!stale || attempt >= 3) throw new DirectoryLockedError(directory, lockFile, current);
    // Moved aside before removal: of two runs taking over the same stale lock, one rename wins
    // and the other finds the name gone (or the winner's new lock) on its next attempt.
    const aside = temporarySibling(lockFile, 'old');
    try {
      renameSync(lockFile, aside);
      rmSync(aside, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    process.removeListener('exit', release);
    // Only our own lock: never one that another run took over meanwhile.
    try {
      if (readFileSync(lockFile, 'utf8') === content) rmSync(lockFile, { force: true });
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return { lockFile, release };
}
