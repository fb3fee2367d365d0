// TensorBoard event files, written without TensorFlow: a TFRecord stream of `tensorflow.Event`
// protobuf messages, the format `tf.summary` and PyTorch's SummaryWriter write and TensorBoard's
// EventAccumulator reads.
//
// TFRecord framing of each record (all little-endian):
//   uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// Readers check both checksums and stop at the first bad record, so a torn tail after a crash
// costs only the record being written.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Root, Type } from 'protobufjs';
import { crc32c } from '@aws-crypto/crc32c';

// The few fields we write, with the field numbers of tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto (checked against tensorboard.compat.proto 2.21).
const protoRoot = Root.fromJSON({
  nested: {
    tensorflow: {
      nested: {
        Event: {
          oneofs: { what: { oneof: ['file_version', 'summary', 'session_log'] } },
          fields: {
            wall_time: { type: 'double', id: 1 },
            step: { type: 'int64', id: 2 },
            file_version: { type: 'string', id: 3 },
            summary: { type: 'Summary', id: 5 },
            session_log: { type: 'SessionLog', id: 7 },
          },
        },
        SessionLog: {
          fields: { status: { type: 'SessionStatus', id: 1 } },
          nested: { SessionStatus: { values: { STATUS_UNSPECIFIED: 0, START: 1, STOP: 2, CHECKPOINT: 3 } } },
        },
        Summary: {
          fields: { value: { rule: 'repeated', type: 'Value', id: 1 } },
          nested: {
            Value: {
              // simple_value sits in a oneof upstream: presence is explicit, so 0 is still written.
              oneofs: { value: { oneof: ['simple_value'] } },
              fields: {
                tag: { type: 'string', id: 1 },
                simple_value: { type: 'float', id: 2 },
              },
            },
          },
        },
      },
    },
  },
});
const EventType: Type = protoRoot.lookupType('tensorflow.Event');

/** The version string TensorFlow 2 writes as the first event of every file. */
export const EVENT_FILE_VERSION = 'brain.Event:2';
export const EVENT_FILE_PREFIX = 'events.out.tfevents.';

const CRC_MASK_DELTA = 0xa282ead8;

/** TFRecord's masked CRC32C: a checksum stored next to data that itself holds checksums stays distinguishable. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + CRC_MASK_DELTA) >>> 0;
}

/** One TFRecord: the framing around `data`, as one buffer so that it goes out in one write. */
export function tfRecord(data: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + 4 + data.byteLength + 4);
  record.writeBigUInt64LE(BigInt(data.byteLength), 0);
  record.writeUInt32LE(maskedCrc32c(record.subarray(0, 8)), 8);
  record.set(data, 12);
  record.writeUInt32LE(maskedCrc32c(data), 12 + data.byteLength);
  return record;
}

export interface TensorBoardWriterOptions {
  /**
   * A run resumed from the checkpoint of this step: TensorBoard is told to hide the events of
   * later steps from earlier files (the abandoned steps this run redoes), as PyTorch's
   * SummaryWriter(purge_step = purgeAfterStep + 1) does.
   */
  purgeAfterStep?: number;
}

// Distinguishes files one process opens within the same second, as TensorFlow's global counter does.
let fileCounter = 0;

export class TensorBoardWriter {
  /** The event file this writer appends to. */
  readonly file: string;
  private fd: number | undefined;

  /**
   * Creates `dir` and a new event file `events.out.tfevents.<unix seconds>.<hostname>.<pid>.<counter>`
   * in it, starting with the file_version record. A resumed run gets a new file, as TensorFlow does
   * (TensorBoard reads the files of a directory in name order); with `purgeAfterStep` the file then
   * holds a SessionLog START at step purgeAfterStep + 1, on which TensorBoard drops every event it
   * has read of that step and later. Without it, a brain.Event:2 reader keeps both the abandoned
   * and the redone values of those steps.
   */
  constructor(dir: string, options: TensorBoardWriterOptions = {}) {
    const { purgeAfterStep } = options;
    if (purgeAfterStep !== undefined && (!Number.isSafeInteger(purgeAfterStep) || purgeAfterStep < 0)) {
      throw new Error(`TensorBoardWriter: purgeAfterStep must be a non-negative integer, got ${purgeAfterStep}`);
    }
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (error) {
      throw new Error(`TensorBoardWriter: cannot create the log directory ${dir}: ${(error as Error).message}`);
    }
    const seconds = Math.floor(Date.now() / 1000);
    for (;;) {
      fileCounter += 1;
      const file = path.join(dir, `${EVENT_FILE_PREFIX}${seconds}.${os.hostname()}.${process.pid}.${fileCounter}`);
      try {
        // 'wx': two writers must never share a file (interleaved records would be unreadable).
        this.fd = fs.openSync(file, 'wx', 0o644);
        this.file = file;
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw new Error(`TensorBoardWriter: cannot create the event file ${file}: ${(error as Error).message}`);
      }
    }
    this.writeEvent({ wall_time: Date.now() / 1000, file_version: EVENT_FILE_VERSION });
    if (purgeAfterStep !== undefined) {
      this.writeEvent({ wall_time: Date.now() / 1000, step: purgeAfterStep + 1, session_log: { status: 'START' } });
    }
  }

  /**
   * One Event per call holding a Summary with one simple_value per tag (stored as float32, as
   * TensorBoard keeps scalars); wall_time = now in seconds. Each record reaches the OS before this
   * returns (one write(2)), so a crash of the process loses nothing written.
   */
  addScalars(step: number, scalars: Record<string, number>): void {
    if (!Number.isSafeInteger(step) || step < 0) {
      throw new Error(`TensorBoardWriter.addScalars: step must be a non-negative integer, got ${step}`);
    }
    const value = Object.entries(scalars).map(([tag, simple_value]) => {
      if (tag === '') throw new Error('TensorBoardWriter.addScalars: a tag is the empty string');
      if (typeof simple_value !== 'number') {
        throw new Error(`TensorBoardWriter.addScalars: the value of '${tag}' must be a number, got ${typeof simple_value}`);
      }
      return { tag, simple_value };
    });
    if (value.length === 0) return;
    this.writeEvent({ wall_time: Date.now() / 1000, step, summary: { value } });
  }

  /** Forces what was written to the disk (fsync): it then survives a power loss, not only a crash. */
  flush(): void {
    if (this.fd !== undefined) fs.fsyncSync(this.fd);
  }

  /** Flushes and closes the file; a second call does nothing. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  private writeEvent(event: Record<string, unknown>): void {
    if (this.fd === undefined) throw new Error(`TensorBoardWriter: ${this.file} is closed`);
    const record = tfRecord(EventType.encode(EventType.fromObject(event)).finish());
    let written = 0;
    while (written < record.byteLength) {
      written += fs.writeSync(this.fd, record, written, record.byteLength - written);
    }
  }
}
