"""Writes the generated part of the seed corpora, tests/fuzz/corpus/<harness>/seed-*: small
inputs of every kind each parser reads (the image seeds come from make_image_seeds.cpp, and
some torch seeds are copied from tests/reference/golden/torch). Python's standard library only:
the PyTorch checkpoints are pickled with stand-ins for torch's classes, which is all that
torch.save's data.pkl names.

  python3 tests/fuzz/make_seeds.py

Rewrites only seed-* files; regress-* files (minimised findings) and anything else in the corpus
directories stay as they are.
"""
import collections
import gzip
import io
import json
import os
import pickle
import shutil
import struct
import sys
import tarfile
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
GOLDEN_TORCH = os.path.join(ROOT, "tests", "reference", "golden", "torch")


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---- PyTorch checkpoints -------------------------------------------------------------------

def fake_module(name):
    m = types.ModuleType(name)
    sys.modules[name] = m
    return m


torch = fake_module("torch")
torch_utils = fake_module("torch._utils")
torch._utils = torch_utils
numpy_ma = fake_module("numpy.core.multiarray")
fake_module("numpy").core = fake_module("numpy.core")
sys.modules["numpy.core"].multiarray = numpy_ma


def _global(module, name, obj):
    obj.__module__ = module.__name__
    obj.__qualname__ = obj.__name__ = name
    setattr(module, name, obj)
    return obj


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


def _rebuild_parameter(*args):
    raise NotImplementedError


def scalar(*args):
    raise NotImplementedError


_global(torch_utils, "_rebuild_tensor_v2", _rebuild_tensor_v2)
_global(torch_utils, "_rebuild_parameter", _rebuild_parameter)
_global(numpy_ma, "scalar", scalar)
STORAGE_TYPES = {}
for tname, fmt in [("FloatStorage", "<f"), ("DoubleStorage", "<d"), ("HalfStorage", "<e"), ("BFloat16Storage", None),
                   ("LongStorage", "<q"), ("IntStorage", "<i"), ("ByteStorage", "<B"), ("BoolStorage", "<?")]:
    STORAGE_TYPES[tname] = (_global(torch, tname, type(tname, (), {})), fmt)


class Storage:
    def __init__(self, key, tname, values):
        self.key, self.tname, self.values = key, tname, values

    def data(self):
        fmt = STORAGE_TYPES[self.tname][1]
        if fmt is None:  # bfloat16: the high half of a float32
            return b"".join(struct.pack("<f", v)[2:] for v in self.values)
        return b"".join(struct.pack(fmt, v) for v in self.values)


class Tensor:
    def __init__(self, storage, offset, size, stride, parameter=False):
        self.storage, self.offset, self.size, self.stride, self.parameter = storage, offset, size, stride, parameter

    def __reduce_ex__(self, protocol):
        t = (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                                  collections.OrderedDict()))
        if not self.parameter:
            return t
        return (_rebuild_parameter, (self, True, collections.OrderedDict()))


class PlainTensor(Tensor):  # the tensor inside a Parameter
    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                                     collections.OrderedDict()))


def parameter(storage, offset, size, stride):
    p = Tensor(storage, offset, size, stride)
    inner = PlainTensor(storage, offset, size, stride)
    p.__reduce_ex__ = lambda protocol: (_rebuild_parameter, (inner, True, collections.OrderedDict()))
    return p


class NumpyScalar:
    def __reduce_ex__(self, protocol):
        return (scalar, (b"\x00" * 8,))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_TYPES[obj.tname][0], obj.key, "cpu", len(obj.values))
        return None


def data_pkl(obj, protocol):
    out = io.BytesIO()
    TorchPickler(out, protocol=protocol).dump(obj)
    return out.getvalue()


def checkpoint(obj, protocol=2, method=zipfile.ZIP_STORED, archive="archive", byteorder=True):
    storages = {}

    def collect(o):
        if isinstance(o, Tensor):
            storages[o.storage.key] = o.storage
        elif isinstance(o, dict):
            for v in o.values():
                collect(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                collect(v)

    collect(obj)
    pkl = data_pkl(obj, protocol)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr(archive + "/data.pkl", pkl)
        if byteorder:
            z.writestr(archive + "/byteorder", "little")
        for key in sorted(storages):
            z.writestr(archive + "/data/" + key, storages[key].data())
        z.writestr(archive + "/version", "3\n")
    return out.getvalue(), pkl


def state_dict():
    w = Storage("0", "FloatStorage", [0.5, -1.0, 2.0, 0.25, 3.0, -0.125])
    b = Storage("1", "FloatStorage", [1.0, 2.0, 3.0])
    sd = collections.OrderedDict()
    sd["visual.proj"] = Tensor(w, 0, [2, 3], [3, 1])
    sd["visual.proj_t"] = Tensor(w, 0, [3, 2], [1, 3])  # transposed view of the same storage
    sd["ln.bias"] = Tensor(b, 1, [2], [1])               # storage offset
    sd["logit_scale"] = Tensor(b, 0, [], [])             # a scalar
    return sd


def mixed_dict():
    sd = collections.OrderedDict()
    vals = [1.0, -2.0, 0.5, 4.0]
    for i, tname in enumerate(["HalfStorage", "BFloat16Storage", "DoubleStorage", "LongStorage", "IntStorage",
                               "ByteStorage", "BoolStorage"]):
        v = [int(x) for x in vals] if tname in ("LongStorage", "IntStorage") else vals
        if tname == "ByteStorage":
            v = [1, 2, 3, 255]
        if tname == "BoolStorage":
            v = [True, False, True, True]
        sd["t%d.%s" % (i, tname)] = Tensor(Storage(str(i), tname, v), 0, [2, 2], [2, 1])
    sd["empty"] = Tensor(Storage("9", "FloatStorage", []), 0, [0, 3], [3, 1])
    return sd


def training_checkpoint():
    sd = collections.OrderedDict(("module." + k, v) for k, v in state_dict().items())
    m = Storage("5", "FloatStorage", [0.0] * 6)
    step = Storage("6", "FloatStorage", [1.0])
    return {
        "epoch": 3,
        "name": "run",
        "state_dict": sd,
        "optimizer": {"state": {0: {"step": Tensor(step, 0, [], []), "exp_avg": Tensor(m, 0, [2, 3], [3, 1])}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "weight_decay": 0.2, "params": [0, 1]}]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 7},
        "best_metrics": {"top1": NumpyScalar()},
    }


def torch_seeds():
    seeds = {}
    seeds["state_dict.bin"], _ = checkpoint(state_dict())
    seeds["deflate.bin"], _ = checkpoint(state_dict(), method=zipfile.ZIP_DEFLATED)
    seeds["protocol4.bin"], _ = checkpoint(state_dict(), protocol=4, byteorder=False)
    seeds["mixed_dtypes.bin"], _ = checkpoint(mixed_dict(), archive="mixed")
    seeds["training.pt"], _ = checkpoint(training_checkpoint(), archive="epoch_3")
    p = Storage("0", "FloatStorage", [1.0, 2.0])
    seeds["parameter.bin"], _ = checkpoint({"w": parameter(p, 0, [2], [1])})
    return seeds


# ---- safetensors -----------------------------------------------------------------------------

def safetensors(entries, metadata=None, pad=True):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    while pad and len(h) % 8:
        h += b" "
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    return {
        "f32.safetensors": safetensors([("w", "F32", [2, 2], f32)], {"format": "pt"}),
        "dtypes.safetensors": safetensors([
            ("a", "F64", [2], struct.pack("<2d", 1.5, -2.0)),
            ("b", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
            ("c", "F16", [3], struct.pack("<3H", 0x3C00, 0x0001, 0x7C00)),
            ("d", "I32", [1, 2], struct.pack("<2i", 7, -7)),
            ("e", "U8", [3], b"\x01\x02\xff"),
            ("scalar", "F32", [], struct.pack("<f", 2.5)),
            ("empty", "F32", [0, 4], b""),
        ], {"step": "10", "format": "pt"}),
        "unpadded.safetensors": safetensors([("x", "F32", [1], struct.pack("<f", 1.0))], pad=False),
        "bad_dtype.safetensors": safetensors([("x", "I64", [1], struct.pack("<q", 1))]),
    }


# ---- JSON configs and indexes ----------------------------------------------------------------

def model_config_seeds():
    seeds = {}
    for d, names in [(os.path.join(ROOT, "launch", "configs"), None),
                     (os.path.join(ROOT, "tests", "reference", "golden"), ["micro.json", "micro_kv.json"])]:
        for name in sorted(names or os.listdir(d)):
            if name.endswith(".json"):
                with open(os.path.join(d, name), "rb") as f:
                    seeds[name] = f.read()
    with open(os.path.join(ROOT, "tests", "reference", "golden", "micro.json")) as f:
        cfg = json.load(f)
    cfg["preprocess_cfg"] = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    cfg["init_logit_scale"] = 2.0
    cfg["vision_cfg"]["patch_dropout"] = 0.5
    cfg["vision_cfg"]["mlp_ratio"] = 2.5
    cfg["text_cfg"]["pad_id"] = 1
    cfg["text_cfg"]["correct_cls_mask"] = True
    cfg["quick_gelu"] = False
    cfg["unknown_key"] = [1, {"x": None}]
    seeds["every_key.json"] = json.dumps(cfg, indent=1)
    return seeds


def shard_index(fmt=1, classes=None, tokenizer=True, extra=None):
    shards = [{"file": "shard-00000.h5", "samples": 40}, {"file": "shard-00001.h5", "samples": 23},
              {"file": "shard-00002.h5", "samples": 0}]
    j = {"format": "coca-shards", "format_version": fmt, "total_samples": 63, "num_shards": 3,
         "image_format": "raw" if fmt == 1 else "jpeg", "image_size": 64, "chunk_images": 8,
         "compression": "lzf", "checksum": "fletcher32", "context_length": 77 if tokenizer else 0,
         "tokenizer": {"file": "bpe.txt.gz", "sha256": "ab" * 32, "vocab_size": 49408, "sot": 49406, "eot": 49407,
                       "pad": 0} if tokenizer else None,
         "source": {"format": "csv", "path": "captions.tsv"}, "command": "coca-shard csv captions.tsv out",
         "shards": shards}
    if classes:
        j["num_classes"] = len(classes)
        j["classnames"] = classes
    if extra is not None:
        j["extra"] = extra
    return json.dumps(j, indent=2)


def shard_index_seeds():
    return {
        "format1.json": shard_index(),
        "format2.json": shard_index(fmt=2, tokenizer=False, extra={"reencode": "auto", "skipped": {"corrupt_image": 2}}),
        "classes.json": shard_index(classes=["tench", "goldfish", "great white shark"]),
        "old_no_checksum.json": json.dumps({"format": "coca-shards", "format_version": 1, "total_samples": 5,
                                            "image_size": 32, "shards": [{"file": "a.h5", "samples": 5}]}),
    }


# ---- coca-shard inputs (first byte: 0 csv, 1 coco, 2 tar) --------------------------------------

def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def shard_inputs_seeds():
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 12
    return {
        "captions.tsv": b"\x00" + b"filepath\ttitle\nimg/a.jpg\ta cat\n/abs/b.png\t\"quoted\ttab\"\n",
        "captions_crlf.tsv": b"\x00" + b"\xef\xbb\xbffilepath\ttitle\r\nc.jpg\t\"two\nlines\"\r\nd.jpg\t\"open quote\nbad\tx\n",
        "captions.csv": b"\x00" + b'filepath,title\na.jpg,"a ""quoted"" caption"\nb.jpg,plain\n,\n',
        "coco.json": b"\x01" + json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"}],
            "annotations": [{"id": 10, "image_id": 1, "caption": "a cat"}, {"id": 11, "image_id": 1, "caption": "a dog"},
                            {"id": 12, "image_id": 9, "caption": "orphan"}, {"id": 13, "image_id": 2, "caption": 5}]}).encode(),
        "wds.tar": b"\x02" + tar_bytes([
            ("000/0001.jpg", jpeg), ("000/0001.txt", b"a cat"), ("000/0001.json", b'{"key": "k1", "caption": "c"}'),
            ("000/0002.png", b"\x89PNG\r\n\x1a\n"), ("000/0002.json", b'{"caption": "from json"}'),
            ("000/0003.gif", b"GIF89a"), ("000/0004.txt", b"no image")]),
        "wds_long_names.tar": b"\x02" + tar_bytes([
            ("d" * 120 + "/x.webp", b"RIFF\x00\x00\x00\x00WEBP"), ("d" * 120 + "/x.txt", b"long name")]),
        "wds_pax.tar": b"\x02" + tar_bytes([
            ("p" * 110 + ".jpg", jpeg), ("p" * 110 + ".txt", b"pax name")], fmt=tarfile.PAX_FORMAT),
        "wds_ustar.tar": b"\x02" + tar_bytes([
            ("u" * 90 + "/" + "v" * 60 + ".jpg", jpeg), ("u" * 90 + "/" + "v" * 60 + ".txt", b"ustar prefix")],
            fmt=tarfile.USTAR_FORMAT),
        "wds_truncated.tar": b"\x02" + tar_bytes([("a.jpg", jpeg * 40), ("a.txt", b"cut")])[:700],
    }


# ---- class lists (A \0 B) and the tokenizer (text \0 merges file) -----------------------------

def class_lists_seeds():
    return {
        "templates_names": "a photo of a {}.\n# comment\r\nitap of the {}\n\n{} and {}\n\0tench\r\ngoldfish\n\ngreat white shark\n",
        "wnids_mapped": "n01440764\nn01443537\ngreat_white_shark\n\0n01440764\ttench\nn01443537\tgoldfish\ngreat_white_shark\tshark\n",
        "wnids_plain": "n01440764\nn01443537\ngreat_white_shark\nn99999999\n\0one\ntwo\nthree\nfour\n",
        "folder_names": "no template here\n\0fish a\nfish b\nshark\n",
    }


MERGES = ["t h", "th e</w>", "a n", "an d</w>", "i n", "in g</w>", "c a", "ca t</w>", "\u0120 a"]


def merges_file(header="#version: 0.2 coca-bpe vocab_size=%d" % (512 + len(MERGES) + 2)):
    return (header + "\n" + "\n".join(MERGES) + "\n").encode()


def tokenizer_seeds():
    text = "The cat &amp; the dog's THING, running 12 times \u201cquoted\u201d caf\u00e9 \U0001F600 <start_of_text>x"
    return {
        "plain": text.encode() + b"\0" + merges_file(),
        "gzipped": b"A photo of a cat and a thing\0" + gzip.compress(merges_file(), mtime=0),
        "openclip_header": b"and the\0" + merges_file("#version: 0.2"),
        "bad_merge": b"x\0" + merges_file() + b"zz yy\n",
        "text_only": "\u00c0\u00c9 \u0130 \t\x07 &#x41;&copy ﬁne ＡＢ".encode(),
    }


def main():
    groups = {"torch_checkpoint": torch_seeds(), "safetensors": safetensors_seeds(),
              "model_config": model_config_seeds(), "shard_index": shard_index_seeds(),
              "shard_inputs": shard_inputs_seeds(), "class_lists": class_lists_seeds(),
              "tokenizer": tokenizer_seeds()}
    pickles = {}
    for name, data in groups["torch_checkpoint"].items():
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pickles[name + ".pkl"] = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
    for name in ["small_deflate.bin", "small_protocol4.bin", "small_zip64.bin", "bad_global.bin", "bad_opcode.bin",
                 "bad_short_pickle.bin"]:
        with open(os.path.join(GOLDEN_TORCH, name), "rb") as f:
            data = f.read()
        groups["torch_checkpoint"]["golden_" + name] = data
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                pickles["golden_" + name + ".pkl"] = z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])
        except zipfile.BadZipFile:
            pass
    groups["pickle"] = pickles
    for harness, seeds in groups.items():
        d = os.path.join(CORPUS, harness)
        if os.path.isdir(d):
            for old in os.listdir(d):
                if old.startswith("seed-") and not (harness == "image"):
                    os.remove(os.path.join(d, old))
        for name, data in seeds.items():
            write(harness, name, data)
    print("make_seeds: wrote", sum(len(s) for s in groups.values()), "seeds under", CORPUS)


if __name__ == "__main__":
    main()
