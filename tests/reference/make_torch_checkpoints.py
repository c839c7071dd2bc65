"""Writes tests/reference/golden/torch/: PyTorch zip checkpoints (torch.save) of the micro
golden weights, for the C++ reader of .bin / .pt files (tests/tensor/test_torch_archive.cpp).

Run with Debian's torch 1.13: /usr/bin/python3 tests/reference/make_torch_checkpoints.py
Every file is derived from golden/micro_weights.safetensors, so a C++ test can compare what
it reads from these archives with the safetensors weights it already trusts.

| file | contents |
|---|---|
| micro.bin | torch.save(state_dict) as OpenCLIP publishes open_clip_pytorch_model.bin (an OrderedDict with _metadata) |
| micro.pt | a training checkpoint: {epoch, name, state_dict with "module." prefixes, optimizer (AdamW state after one step), scaler, best_metrics holding numpy scalars}; its state dict also carries text.attn_mask / text_decoder.attn_mask buffers, one tensor stored transposed (non-contiguous) and one at a non-zero storage offset inside a shared storage |
| micro_mixed.bin | the state dict with tensors in turn float16, bfloat16 and float64 |
| small_deflate.bin | the first 12 tensors, the archive re-zipped with deflate |
| small_zip64.bin | the first 12 tensors, the archive rewritten with zip64 extra fields and a zip64 end record |
| small_protocol4.bin | the first 12 tensors, saved with pickle_protocol=4 |
| bad_opcode.bin | data.pkl uses an opcode outside the supported subset (LIST, protocol 0) |
| bad_global.bin | a state dict entry built by an unknown global (os.system) instead of a tensor |
| bad_short_pickle.bin | a valid data.pkl cut in half (no STOP) |
| truncated.bin | micro.bin cut in half (no end-of-central-directory record) |
"""
import collections
import io
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_io import read_safetensors  # noqa: E402

OUT = os.path.join(HERE, "golden", "torch")


def state_dict_of(weights):
    sd = collections.OrderedDict((k, torch.from_numpy(np.array(v, dtype=np.float32))) for k, v in weights.items())
    # A module's state_dict() carries per-module version metadata as an attribute; pickle writes it
    # with BUILD after the items.
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("visual", {"version": 1})])
    return sd


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip64(path, entries):
    """A stored zip whose every size and offset goes through the zip64 extra field."""
    out = io.BytesIO()
    central = []
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = out.tell()
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                              len(n), len(extra)))
        out.write(n + extra + data)
        central.append((n, crc, len(data), offset))
    cd_start = out.tell()
    for n, crc, size, offset in central:
        extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
        out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                              0xFFFFFFFF, len(n), len(extra), 0, 0, 0, 0, 0xFFFFFFFF))
        out.write(n + extra)
    cd_size = out.tell() - cd_start
    eocd64 = out.tell()
    out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(central), len(central), cd_size,
                          cd_start))
    out.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    with open(path, "wb") as f:
        f.write(out.getvalue())


def entry(name, method):
    """A zip entry with a fixed timestamp, so that the files are the same on every run."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = method
    return info


def write_with_pickle(path, template, pkl):
    """The archive `template` with its data.pkl replaced by `pkl` (stored entries)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in zip_entries(template):
            z.writestr(entry(name, zipfile.ZIP_STORED), pkl if name.endswith("/data.pkl") else data)


def main():
    os.makedirs(OUT, exist_ok=True)
    weights = read_safetensors(os.path.join(HERE, "golden", "micro_weights.safetensors"))
    names = list(weights.keys())

    sd = state_dict_of(weights)
    torch.save(sd, os.path.join(OUT, "micro.bin"))

    # Training checkpoint as OpenCLIP's trainer writes it under DDP.
    ck = collections.OrderedDict()
    for k, v in sd.items():
        ck["module." + k] = v
    proj = sd["visual.proj"]
    ck["module.visual.proj"] = proj.t().contiguous().t()  # same values, column-major strides
    emb = sd["text.cls_emb"]
    shared = torch.cat([torch.full((5,), 7.0), emb, torch.full((3,), -7.0)])
    ck["module.text.cls_emb"] = shared[5:5 + emb.numel()]  # storage offset 5
    ctx = 8  # micro context_length 7 + CLS
    mask = torch.full((ctx, ctx), float("-inf")).triu_(1)
    ck["module.text.attn_mask"] = mask
    ck["module.text_decoder.attn_mask"] = mask[:7, :7].clone()
    few = [torch.nn.Parameter(sd[n].clone()) for n in names[:3]]
    opt = torch.optim.AdamW(few, lr=1e-3)
    sum((p * p).sum() for p in few).backward()
    opt.step()
    torch.save({"epoch": 3, "name": "micro-run", "state_dict": ck, "optimizer": opt.state_dict(),
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 2000, "_growth_tracker": 0},
                # Values of classes the reader does not know (numpy scalars pickle through
                # numpy globals and _codecs.encode): parsed as opaque, never called.
                "best_metrics": {"val_loss": np.float64(0.25), "steps": np.int64(12)}},
               os.path.join(OUT, "micro.pt"))

    kinds = [torch.float16, torch.bfloat16, torch.float64]
    mixed = collections.OrderedDict((k, v.to(kinds[i % 3])) for i, (k, v) in enumerate(sd.items()))
    torch.save(mixed, os.path.join(OUT, "micro_mixed.bin"))

    small = collections.OrderedDict((k, sd[k]) for k in names[:12])
    small_path = os.path.join(OUT, "small.tmp")
    torch.save(small, small_path)
    with zipfile.ZipFile(os.path.join(OUT, "small_deflate.bin"), "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in zip_entries(small_path):
            z.writestr(entry(name, zipfile.ZIP_DEFLATED), data)
    write_zip64(os.path.join(OUT, "small_zip64.bin"), zip_entries(small_path))
    # Pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL), which torch.save writes on request.
    torch.save(small, os.path.join(OUT, "small_protocol4.bin"), pickle_protocol=4)

    tiny = collections.OrderedDict([("logit_scale", sd["logit_scale"])])
    torch.save(tiny, small_path)
    # Protocol 0 LIST (b'l') is outside the subset state dicts use.
    write_with_pickle(os.path.join(OUT, "bad_opcode.bin"), small_path, b"\x80\x02(l.")
    # {"logit_scale": os.system("true")} written by hand: the reader must refuse it, never run it.
    write_with_pickle(os.path.join(OUT, "bad_global.bin"), small_path,
                      b"\x80\x02}X\x0b\x00\x00\x00logit_scalecos\nsystem\nX\x04\x00\x00\x00true\x85Rs.")
    # A valid state-dict pickle cut short: no STOP.
    with zipfile.ZipFile(small_path) as z:
        pkl = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
    write_with_pickle(os.path.join(OUT, "bad_short_pickle.bin"), small_path, pkl[:len(pkl) // 2])
    os.remove(small_path)

    with open(os.path.join(OUT, "micro.bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.bin"), "wb") as f:
        f.write(data[:len(data) // 2])


if __name__ == "__main__":
    main()
