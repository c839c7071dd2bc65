"""Minimal safetensors writer/reader (no dependency on the safetensors package).

Layout: 8-byte little-endian u64 header length N, then N bytes of UTF-8 JSON
{name: {"dtype": "F32"|"I32", "shape": [...], "data_offsets": [begin, end]}} padded with
spaces so that N is a multiple of 8, then the raw little-endian tensor data; offsets are
relative to the start of the data section. Tensors are stored in insertion order,
contiguously. No "__metadata__" entry is written.
"""
import json
import struct

import numpy as np

_DT = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "F64": np.dtype("<f8"),
       "I64": np.dtype("<i8")}
_NP2DT = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}


def write_safetensors(path, tensors):
    """tensors: ordered dict name -> numpy array (float32 or int32)."""
    header = {}
    blobs = []
    off = 0
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if arr.dtype not in _NP2DT:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        dt = _NP2DT[arr.dtype]
        raw = np.ascontiguousarray(arr).astype(_DT[dt], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Returns dict name -> numpy array, in header order."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = _DT[info["dtype"]]
        arr = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
        out[name] = arr.copy()
    return out
