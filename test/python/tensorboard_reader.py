"""Reads TensorBoard event files with TensorBoard's own reader, for the tests.

  tensorboard_reader.py scalars TB_DIR
      {"scalars": [{"tag", "step", "value"}...]} as EventAccumulator loads them from TB_DIR
      (every event, no sampling; values are the float32 TensorBoard stores; NaN/Infinity as strings).
  tensorboard_reader.py records EVENT_FILE
      {"records": N, "file_version": str|null, "error": str|null}: every TFRecord of one file read
      with TensorBoard's record reader, which checks both CRCs; "error" is its DataLossError, if any.
  tensorboard_reader.py --compare LOG_JSONL TB_DIR
      {"compared": N, "mismatches": [...], "tensorboard_only": M}: every numeric value of every line
      of log.jsonl (key = tag, "step" = step) must be in TB_DIR at that step with that value rounded
      to float32. null and string values are not scalars and are skipped. "tensorboard_only"
      counts (tag, step) pairs TensorBoard has that log.jsonl does not (not an error: a trainer may
      write some scalars more often to TensorBoard).
  COMMAND --then COMMAND ...
      Several of the above in one process (one import of tensorboard), one JSON line each.
"""
import json
import math
import os
import struct
import sys

import logging

# TensorBoard warns at import time that TensorFlow is absent; the reduced reader is what we test.
logging.getLogger("tensorboard").setLevel(logging.ERROR)

from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.compat.proto import event_pb2  # noqa: E402
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow  # noqa: E402


def float32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


def json_number(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def load_scalars(tb_dir):
    if not os.path.isdir(tb_dir):
        raise SystemExit(f"tensorboard_reader: no such TensorBoard directory: {tb_dir}")
    accumulator = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    scalars = []
    for tag in sorted(accumulator.Tags()["scalars"]):
        for event in accumulator.Scalars(tag):
            scalars.append({"tag": tag, "step": event.step, "value": event.value})
    return scalars


def read_records(event_file):
    reader = pywrap_tensorflow.PyRecordReader_New(event_file.encode(), 0, b"", None)
    count, file_version, error = 0, None, None
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        except errors.DataLossError as e:
            error = e.message
            break
        event = event_pb2.Event.FromString(reader.record())
        if count == 0 and event.HasField("file_version"):
            file_version = event.file_version
        count += 1
    return {"records": count, "file_version": file_version, "error": error}


def read_log(log_jsonl):
    try:
        with open(log_jsonl, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise SystemExit(f"tensorboard_reader: cannot read {log_jsonl}: {e}")
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip() == "":
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise SystemExit(f"tensorboard_reader: {log_jsonl}:{number} is not JSON: {e}")
    return records


def compare(log_jsonl, tb_dir):
    # The last value wins for a (tag, step) TensorBoard holds twice, as its charts show it.
    tensorboard = {}
    for scalar in load_scalars(tb_dir):
        tensorboard[(scalar["tag"], scalar["step"])] = scalar["value"]
    logged = set()
    mismatches = []
    compared = 0
    for record in read_log(log_jsonl):
        step = record.get("step")
        if not isinstance(step, int):
            mismatches.append({"problem": "line without an integer step", "record": record})
            continue
        for tag, value in record.items():
            if tag == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            compared += 1
            logged.add((tag, step))
            if (tag, step) not in tensorboard:
                mismatches.append({"tag": tag, "step": step, "log": value, "tensorboard": None})
                continue
            expected, actual = float32(value), tensorboard[(tag, step)]
            if not (expected == actual or (math.isnan(expected) and math.isnan(actual))):
                mismatches.append({"tag": tag, "step": step, "log": value, "tensorboard": json_number(actual)})
    return {"compared": compared, "mismatches": mismatches, "tensorboard_only": len(set(tensorboard) - logged)}


def run(argv):
    if len(argv) == 3 and argv[0] == "--compare":
        return compare(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "scalars":
        return {"scalars": [{**s, "value": json_number(s["value"])} for s in load_scalars(argv[1])]}
    if len(argv) == 2 and argv[0] == "records":
        return read_records(argv[1])
    raise SystemExit(__doc__)


def main(argv):
    # Importing tensorboard takes about a second: several commands joined by "--then" share one
    # process and print one JSON line each.
    commands = [[]]
    for arg in argv:
        if arg == "--then":
            commands.append([])
        else:
            commands[-1].append(arg)
    for command in commands:
        print(json.dumps(run(command)))


if __name__ == "__main__":
    main(sys.argv[1:])
