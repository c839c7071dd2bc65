#!/usr/bin/python3
"""Checks a coca-train run's TensorBoard event files against its metrics.jsonl (stdlib only).

usage: check_tensorboard.py RUN_DIR FILES FIRST_STEP LAST_STEP

Reads RUN_DIR/tensorboard/events.out.tfevents.* in name order (the order TensorBoard reads a
run's files), verifying both CRC32Cs of every record and decoding the Event protobuf. Checks:
  - there are FILES files, each starting with file_version "brain.Event:2" then a SessionLog START;
  - the newest file's train/loss steps are FIRST_STEP..LAST_STEP, each once;
  - what TensorBoard shows (a later file's START drops earlier points at steps >= its step; a
    point drops earlier points of its tag at steps >= its own) has each step once, and its
    train/* scalars equal metrics.jsonl's fields as float32, for every step metrics.jsonl has.
"""
import glob
import json
import os
import struct
import sys


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    data = open(path, "rb").read()
    at, n = 0, 0
    while at < len(data):
        if at + 12 > len(data):
            raise ValueError(f"{path}: record {n}: header cut short")
        (length,) = struct.unpack_from("<Q", data, at)
        (len_crc,) = struct.unpack_from("<I", data, at + 8)
        if len_crc != masked(crc32c(data[at:at + 8])):
            raise ValueError(f"{path}: record {n}: length CRC mismatch")
        if at + 12 + length + 4 > len(data):
            raise ValueError(f"{path}: record {n}: data cut short")
        body = data[at + 12:at + 12 + length]
        (data_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        if data_crc != masked(crc32c(body)):
            raise ValueError(f"{path}: record {n}: data CRC mismatch")
        yield body
        at += 12 + length + 4
        n += 1


def varint(buf, at):
    v, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, at
        shift += 7


def fields(buf):
    """(field number, wire type, value) of a protobuf message."""
    at = 0
    while at < len(buf):
        key, at = varint(buf, at)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, at = varint(buf, at)
        elif wire == 1:
            v, at = buf[at:at + 8], at + 8
        elif wire == 2:
            n, at = varint(buf, at)
            v, at = buf[at:at + n], at + n
        elif wire == 5:
            v, at = buf[at:at + 4], at + 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield num, wire, v


def decode_event(buf):
    ev = {"wall_time": 0.0, "step": 0, "values": []}
    for num, wire, v in fields(buf):
        if (num, wire) == (1, 1):
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif (num, wire) == (2, 0):
            ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
        elif (num, wire) == (3, 2):
            ev["file_version"] = v.decode()
        elif (num, wire) == (5, 2):
            for snum, swire, value in fields(v):
                assert (snum, swire) == (1, 2), "Summary holds only value=1"
                tag, x = None, None
                for vnum, vwire, vv in fields(value):
                    if (vnum, vwire) == (1, 2):
                        tag = vv.decode()
                    elif (vnum, vwire) == (2, 5):
                        x = struct.unpack("<f", vv)[0]
                    else:
                        raise ValueError(f"Summary.Value: unexpected field {vnum}")
                ev["values"].append((tag, x))
        elif (num, wire) == (7, 2):
            ev["session_status"] = dict((n, x) for n, _, x in fields(v)).get(1, 0)
        else:
            raise ValueError(f"Event: unexpected field {num}")
    return ev


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    run, n_files, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ok = True

    def check(what, cond):
        nonlocal ok
        print(("PASS " if cond else "FAIL ") + what)
        ok = ok and cond

    files = sorted(glob.glob(os.path.join(run, "tensorboard", "events.out.tfevents.*")))
    check(f"{n_files} event file(s): {[os.path.basename(f) for f in files]}", len(files) == n_files)
    view, starts = {}, 0  # tag -> {step: value}, as TensorBoard shows the run
    newest_loss_steps = []
    for path in files:
        evs = [decode_event(r) for r in records(path)]
        check(f"{os.path.basename(path)} starts with brain.Event:2 and a SessionLog START",
              len(evs) >= 2 and evs[0].get("file_version") == "brain.Event:2" and evs[1].get("session_status") == 1)
        for ev in evs:
            if ev.get("session_status") == 1:
                starts += 1
                if starts > 1:  # the first START of a run is not a restart
                    for points in view.values():
                        for s in [s for s in points if s >= ev["step"]]:
                            del points[s]
            for tag, x in ev["values"]:
                points = view.setdefault(tag, {})
                for s in [s for s in points if s >= ev["step"]]:
                    del points[s]
                points[ev["step"]] = x
        newest_loss_steps = [ev["step"] for ev in evs for tag, _ in ev["values"] if tag == "train/loss"]
    check(f"newest file's train/loss steps are {first}..{last} once each (got {newest_loss_steps})",
          newest_loss_steps == list(range(first, last + 1)))

    jsonl = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    train = {r["step"]: r for r in jsonl if "loss" in r}
    check(f"metrics.jsonl has steps 1..{last} once each", sorted(train) == list(range(1, last + 1)) and
          len(train) == sum(1 for r in jsonl if "loss" in r))
    check("TensorBoard shows the same train/loss steps as metrics.jsonl",
          sorted(view.get("train/loss", {})) == sorted(train))
    for field in ["loss", "contrastive_loss", "caption_loss", "lr", "logit_scale", "grad_norm", "epoch"]:
        tb = view.get("train/" + field, {})
        bad = [s for s, r in train.items() if s not in tb or tb[s] != f32(r[field])]
        check(f"train/{field} equals metrics.jsonl's {field} at every step" + (f" (differs at {bad})" if bad else ""),
              not bad)
    rate = view.get("train/samples_per_second", {})
    check("train/samples_per_second carries samples_per_s",
          all(s in rate and rate[s] == f32(r["samples_per_s"]) for s, r in train.items()))
    print("train/loss as TensorBoard shows it:", {s: round(x, 5) for s, x in sorted(view.get("train/loss", {}).items())})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
