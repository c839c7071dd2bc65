#!/usr/bin/python3
"""Trains the PyTorch reference CoCa (coca_reference.py) with coca-train's recipe, so that
launch/compare_recipe.sh can set the two side by side with only the implementation differing.

  train_reference.py --config launch/configs/quickstart.cfg --train-data DIR --out DIR
                     [--world-size W] [--threads T] [any coca-train training flag ...]

The recipe is read as coca-train reads it: the `key = value` lines of --config, then the
command line (`--key value`, later wins; `aug-cfg` accumulates). Keys that change what is
trained are implemented as coca-train has them:

- data: a format-1 (raw) shard set's images and tokens (h5py), every epoch a fresh permutation,
  floor(samples / (W x batch-size)) steps per epoch (coca's W ranks each read whole shards
  through a 1,000-sample shuffle buffer: the same samples, a different order);
- images: torchvision's RandomResizedCrop draw (scale 0.9-1.0 unless aug-cfg scale=, ratio
  3/4-4/3, 10 tries then the centred fallback), antialiased bilinear (or bicubic) resize,
  then ColorJitter(B, C, S, H) with probability color_jitter_prob in a random order and
  grayscale with gray_scale_prob, on [0, 1] pixels, then CLIP's mean/std;
- model: the reference with spec section 8's initialisation (as src/model/init.cpp draws it,
  from torch's generator), patch dropout keeping max(1, int(P (1 - p))) random patches and
  the class token per sample;
- loss: contrastive weight x contrastive + caption weight x caption over the global batch
  (W ranks of coca compute exactly what one process with the W x batch-size batch does, so
  this runs as one process with that batch);
- optimiser: torch.optim.AdamW (beta1, beta2, eps, wd), weight decay off for 1-D tensors and
  for embeddings, logit_scale, cls_emb, class_embedding, positional_embedding and
  attn_pool.query (src/optim/adamw.cpp's rule); global-norm clipping; logit_scale clamped to
  [0, ln 100] after every step;
- schedule: linear warmup then cosine to 0 at the last step; --max-minutes plans the last
  step as coca-train does: after the warmup (and at least 4 steps) the mean step time sets
  how many steps fit in 98% of the time left less two steps, and the clock stops the run if
  steps slow down later.

Keys that do not change what is trained (workers, log-every-n-steps, ...) are ignored; any
other key is refused. Threads: --threads sets OPENBLAS_NUM_THREADS (Debian's torch computes
its matmuls in OpenBLAS, which ignores torch.set_num_threads) and torch.set_num_threads.

Writes OUT/model.safetensors (OpenCLIP tensor names, float32, state_dict order: coca-eval
reads it), OUT/metrics.jsonl and OUT/summary.json (steps, seconds, samples/s, losses).
"""
import os
import sys


def _early_threads(argv):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


# OpenBLAS reads its thread count when torch loads it.
_threads = _early_threads(sys.argv)
if _threads is not None:
    os.environ["OPENBLAS_NUM_THREADS"] = _threads
    os.environ["OMP_NUM_THREADS"] = _threads

import ast  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from coca_reference import CoCa, coca_losses, l2_normalize, load_config  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# coca-train's defaults for the keys this trainer implements.
DEFAULTS = {
    "model": "coca_tiny", "batch-size": "64", "lr": "5e-4", "wd": "0.2", "beta1": "0.9", "beta2": "0.98",
    "eps": "1e-6", "warmup": "100", "lr-scheduler": "cosine", "grad-clip-norm": "0", "epochs": "1",
    "max-steps": "0", "max-minutes": "0", "seed": "0", "coca-caption-loss-weight": "2.0",
    "coca-contrastive-loss-weight": "1.0", "aug-scale": "0.9,1.0", "accum-freq": "1", "precision": "fp32",
}
TRAINING_KEYS = set(DEFAULTS) | {"model-config", "force-patch-dropout", "aug-cfg", "train-data"}
# Keys that change nothing that is trained, only how coca-train logs, saves or feeds itself.
IGNORED_KEYS = {"workers", "log-every-n-steps", "save-every-n-steps", "save-frequency", "zeroshot-frequency",
                "val-frequency", "logs", "name", "report-to", "keep-checkpoints", "bucket-mb", "zero1", "device",
                "zeroshot-data", "zeroshot-templates", "val-data"}
OWN_KEYS = {"config", "world-size", "threads", "out", "log-every"}


def fail(msg):
    sys.exit(f"train_reference: {msg}")


def read_config_file(path):
    pairs = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line:
                fail(f"{path}: '{line}' is not key = value")
            k, v = line.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    return pairs


def parse_command_line(argv):
    pairs, i = [], 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            fail(f"unexpected argument '{a}'")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                fail(f"{a} needs a value")
            k, v = a[2:], argv[i + 1]
            i += 2
        pairs.append((k, v))
    return pairs


def settings_from(argv):
    """The recipe: DEFAULTS, then --config's lines, then the command line."""
    cli = parse_command_line(argv)
    config = [v for k, v in cli if k == "config"]
    pairs = read_config_file(config[-1]) if config else []
    s = dict(DEFAULTS)
    s["aug-cfg"] = []
    for k, v in pairs + cli:
        if k in IGNORED_KEYS or k == "config":
            continue
        if k not in TRAINING_KEYS and k not in OWN_KEYS:
            fail(f"--{k} is not implemented here; it would change what is trained, so the comparison refuses it")
        if k == "aug-cfg":
            s[k] += v.split()
        else:
            s[k] = v
    for key in ("train-data", "out"):
        if key not in s:
            fail(f"--{key} is required")
    if s["accum-freq"] != "1":
        fail("--accum-freq other than 1 is not implemented here")
    if s["precision"] not in ("fp32", "auto"):
        fail(f"--precision {s['precision']}: the reference trains in float32 only")
    return s


def parse_aug(s):
    lo, hi = (float(x) for x in s["aug-scale"].split(","))
    aug = {"scale": (lo, hi), "ratio": (3 / 4, 4 / 3), "interpolation": "bilinear", "jitter": None,
           "jitter_prob": 0.0, "gray_prob": 0.0}
    for word in s["aug-cfg"]:
        key, value = word.split("=", 1)
        value = ast.literal_eval(value.strip("'\""))
        if key == "scale":
            aug["scale"] = tuple(float(x) for x in value)
        elif key == "ratio":
            aug["ratio"] = tuple(float(x) for x in value)
        elif key == "interpolation":
            aug["interpolation"] = str(value)
        elif key == "color_jitter":
            aug["jitter"] = tuple(float(x) for x in value)
        elif key == "color_jitter_prob":
            aug["jitter_prob"] = float(value)
        elif key == "gray_scale_prob":
            aug["gray_prob"] = float(value)
        else:
            fail(f"--aug-cfg {key} is not implemented here")
    if aug["interpolation"] not in ("bilinear", "bicubic"):
        fail(f"--aug-cfg interpolation={aug['interpolation']}: bilinear or bicubic")
    return aug


# ---- data ---------------------------------------------------------------------------------

def load_shard_set(directory):
    """All images (uint8 [N, S, S, 3]) and tokens (int32 [N, L]) of a format-1 shard set."""
    with open(os.path.join(directory, "index.json")) as f:
        index = json.load(f)
    if index.get("image_format", "raw") != "raw":
        fail(f"--train-data {directory}: shard format {index.get('format_version')} ({index.get('image_format')}); "
             "the reference trainer reads raw (format 1) sets")
    images, tokens = [], []
    for shard in index["shards"]:
        with h5py.File(os.path.join(directory, shard["file"]), "r") as f:
            if "tokens" not in f:
                fail(f"{shard['file']}: no tokens (make the set with coca-shard --tokenizer)")
            images.append(f["images"][:])
            tokens.append(f["tokens"][:])
    return np.concatenate(images), np.concatenate(tokens).astype(np.int64), index


def crop_box(rng, width, height, scale, ratio):
    """torchvision's RandomResizedCrop.get_params: (x, y, w, h)."""
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_r[0], log_r[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    w, h = width, height
    if in_ratio < ratio[0]:
        h = int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        w = int(round(h * ratio[1]))
    return (width - w) // 2, (height - h) // 2, w, h


def grayscale(x):  # x [n, 3, H, W] -> [n, 1, H, W], torchvision's weights
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def rgb_to_hsv(x):
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    flat = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(flat, ones, maxc)
    d = torch.where(flat, ones, cr)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return h, s, maxc


def hsv_to_rgb(h, s, v):
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros(h.shape[0], 3, *h.shape[1:])
    for k, rgb in enumerate(table):
        m = (i == k).unsqueeze(1)
        out = torch.where(m, torch.stack(rgb, dim=1), out)
    return out


def color_op(x, op, f):
    """torchvision's adjust_{brightness, contrast, saturation, hue} on [n, 3, H, W] in [0, 1];
    f [n] factors (hue: shifts)."""
    f4 = f.view(-1, 1, 1, 1)
    if op == 0:
        return (f4 * x).clamp(0, 1)
    if op == 1:
        mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
        return (f4 * x + (1 - f4) * mean).clamp(0, 1)
    if op == 2:
        return (f4 * x + (1 - f4) * grayscale(x)).clamp(0, 1)
    h, s, v = rgb_to_hsv(x)
    h = torch.remainder(h + f.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(h, s, v)


def make_batch(images_u8, rows, out_size, aug, rng):
    """Train-time images: [n, 3, out, out] float32, normalised."""
    n = len(rows)
    out = torch.empty(n, 3, out_size, out_size)
    for j, row in enumerate(rows):
        img = images_u8[row]  # [S, S, 3]
        height, width = img.shape[:2]
        x, y, w, h = crop_box(rng, width, height, aug["scale"], aug["ratio"])
        crop = torch.from_numpy(np.ascontiguousarray(img[y:y + h, x:x + w])).permute(2, 0, 1).float().div_(255.0)
        if w == out_size and h == out_size:
            out[j] = crop
        else:
            out[j] = F.interpolate(crop.unsqueeze(0), size=(out_size, out_size), mode=aug["interpolation"],
                                   align_corners=False, antialias=True)[0].clamp_(0, 1)
    if aug["jitter"] is not None and aug["jitter_prob"] > 0:
        jittered = rng.uniform(size=n) < aug["jitter_prob"]
        b, c, s, hue = aug["jitter"]
        spread = [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-hue, hue)]
        used = [b > 0, c > 0, s > 0, hue > 0]
        factors = np.stack([rng.uniform(lo, hi, size=n) for lo, hi in spread], axis=1)  # [n, 4]
        order = np.stack([rng.permutation(4) for _ in range(n)])  # [n, 4]
        for position in range(4):
            for op in range(4):
                if not used[op]:
                    continue
                pick = np.nonzero(jittered & (order[:, position] == op))[0]
                if len(pick):
                    idx = torch.from_numpy(pick)
                    out[idx] = color_op(out[idx], op, torch.from_numpy(factors[pick, op]).float())
    if aug["gray_prob"] > 0:
        pick = np.nonzero(rng.uniform(size=n) < aug["gray_prob"])[0]
        if len(pick):
            idx = torch.from_numpy(pick)
            out[idx] = grayscale(out[idx]).expand(-1, 3, -1, -1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (out - mean) / std


# ---- model --------------------------------------------------------------------------------

def initialise(model, cfg, gen):
    """Spec section 8, drawn as src/model/init.cpp draws it (in torch's generator)."""
    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=gen) * std)

    def uniform(t, bound):
        t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * bound)

    def default_linear(lin):
        bound = 1.0 / math.sqrt(lin.weight.shape[1])
        uniform(lin.weight, bound)
        if lin.bias is not None:
            uniform(lin.bias, bound)

    def xavier(w):
        uniform(w, math.sqrt(6.0 / (w.shape[0] + w.shape[1])))

    def attention_xavier(a):
        if a.packed:
            xavier(a.in_proj_weight)
        else:
            xavier(a.q_proj_weight), xavier(a.k_proj_weight), xavier(a.v_proj_weight)
        a.in_proj_bias.zero_()
        default_linear(a.out_proj)
        a.out_proj.bias.zero_()

    def text_block(b, width, layers):
        attn_std = width ** -0.5
        proj_std = attn_std * (2.0 * layers) ** -0.5
        if b.attn.packed:
            normal(b.attn.in_proj_weight, attn_std)
        b.attn.in_proj_bias.zero_()
        normal(b.attn.out_proj.weight, proj_std)
        b.attn.out_proj.bias.zero_()
        normal(b.mlp.c_fc.weight, (2.0 * width) ** -0.5)
        uniform(b.mlp.c_fc.bias, 1.0 / math.sqrt(width))
        normal(b.mlp.c_proj.weight, proj_std)
        uniform(b.mlp.c_proj.bias, 1.0 / math.sqrt(b.mlp.c_proj.weight.shape[1]))

    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))
        t = model.text
        normal(t.token_embedding.weight, 0.02)
        normal(t.positional_embedding, 0.01)
        normal(t.cls_emb, 0.01)
        for b in t.transformer.resblocks:
            text_block(b, cfg.text.width, cfg.text.layers)
        normal(t.text_projection, cfg.text.width ** -0.5)
        v = model.visual
        scale = cfg.vision.width ** -0.5
        normal(v.class_embedding, scale)
        normal(v.positional_embedding, scale)
        normal(v.proj, scale)
        uniform(v.conv1.weight, 1.0 / math.sqrt(3 * cfg.vision.patch_size ** 2))
        for b in v.transformer.resblocks:
            attention_xavier(b.attn)
            default_linear(b.mlp.c_fc)
            default_linear(b.mlp.c_proj)
        normal(v.attn_pool.query, 1.0)
        attention_xavier(v.attn_pool.attn)
        d = model.text_decoder
        for sa, ca in zip(d.resblocks, d.cross_attn):
            text_block(sa, cfg.multimodal.width, cfg.multimodal.layers)
            text_block(ca, cfg.multimodal.width, cfg.multimodal.layers)
        normal(d.text_projection, cfg.multimodal.width ** -0.5)
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.fill_(1.0 if name.endswith(".weight") else 0.0)


def train_losses(model, images, tokens, patch_dropout, gen, clip_w, cap_w):
    """The reference's forward with patch dropout in the image tower (spec sections 2-6)."""
    v = model.visual
    x = v.conv1(images)  # [B, P, w]
    B, P, w = x.shape
    x = torch.cat([v.class_embedding.reshape(1, 1, -1).expand(B, 1, -1), x], dim=1) + v.positional_embedding
    if patch_dropout > 0:
        keep = max(1, int(P * (1.0 - patch_dropout)))
        idx = torch.rand(B, P, generator=gen).argsort(dim=1)[:, :keep].sort(dim=1).values + 1  # [B, keep]
        x = torch.cat([x[:, :1], x.gather(1, idx.unsqueeze(-1).expand(-1, -1, w))], dim=1)  # [B, 1 + keep, w]
    pooled = v.ln_post(v.attn_pool(v.transformer(v.ln_pre(x))))  # [B, Q, E]
    txt = model.text(tokens)
    out = {"image_features": l2_normalize(pooled[:, 0] @ v.proj),
           "text_features": l2_normalize(txt["latent"]),
           "caption_logits": model.text_decoder(pooled[:, 1:], txt["token_embs"][:, :-1]),
           "logit_scale": model.logit_scale}
    return coca_losses(out, tokens, model.cfg.text.pad_id, clip_w, cap_w)


def excluded_from_weight_decay(name, p):  # src/optim/adamw.cpp
    keys = ("embedding", "logit_scale", "cls_emb", "class_embedding", "positional_embedding", "attn_pool.query",
            "token_embedding")
    return p.dim() <= 1 or any(k in name for k in keys)


def learning_rate(schedule, base, step, warmup, total):  # src/optim/adamw.cpp, learning_rate
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "const":
        return base
    e, es = step - warmup, max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(e / es, 1.0))) * base


# ---- the run ------------------------------------------------------------------------------

def main():
    s = settings_from(sys.argv[1:])
    world = int(s.get("world-size", "1"))
    threads = int(s.get("threads", "1"))
    torch.set_num_threads(threads)
    out_dir = s["out"]
    os.makedirs(out_dir, exist_ok=True)
    seed = int(s["seed"])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    model_path = s.get("model-config") or os.path.join(ROOT, "launch", "configs", s["model"] + ".json")
    cfg = load_config(model_path)
    if getattr(cfg, "multimodal", None) is None or not cfg.vision.attentional_pool:
        fail(f"{model_path}: the reference trainer trains CoCa with an attentional pooler only")
    model = CoCa(cfg)
    initialise(model, cfg, gen)
    model.train()

    images, tokens, index = load_shard_set(s["train-data"])
    if tokens.shape[1] != cfg.text.context_length:
        fail(f"shards hold {tokens.shape[1]}-token captions, the model wants {cfg.text.context_length}")
    aug = parse_aug(s)
    batch = int(s["batch-size"]) * world
    steps_per_epoch = len(images) // batch
    if steps_per_epoch < 1:
        fail(f"{len(images)} samples make no batch of {batch}")
    epochs, max_steps = int(s["epochs"]), int(s["max-steps"])
    total = epochs * steps_per_epoch
    if max_steps > 0:
        total = min(total, max_steps)
    warmup, base_lr, schedule = int(s["warmup"]), float(s["lr"]), s["lr-scheduler"]
    if schedule not in ("cosine", "const"):
        fail(f"--lr-scheduler {schedule}: cosine or const here")
    minutes = float(s["max-minutes"])
    clip_norm = float(s["grad-clip-norm"])
    clip_w, cap_w = float(s["coca-contrastive-loss-weight"]), float(s["coca-caption-loss-weight"])
    patch_dropout = float(s.get("force-patch-dropout", "0"))
    log_every = int(s.get("log-every", "20"))

    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not excluded_from_weight_decay(n, p)], "weight_decay": float(s["wd"])},
              {"params": [p for n, p in named if excluded_from_weight_decay(n, p)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=base_lr, betas=(float(s["beta1"]), float(s["beta2"])), eps=float(s["eps"]))
    params = [p for _, p in named]
    max_logit = math.log(100.0)

    print(f"train_reference: {len(images)} samples, batch {batch} ({world} x {s['batch-size']}), "
          f"{steps_per_epoch} steps per epoch, at most {total} steps, {threads} threads "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}), seed {seed}", flush=True)
    metrics = open(os.path.join(out_dir, "metrics.jsonl"), "w")
    step, epoch, planned = 0, 0, False
    order = rng.permutation(len(images))
    t_start = time.time()
    t_first = t_log = t_start
    window, window_from = [], 0
    stopped_by_clock = False
    while step < total:
        pos = step - epoch * steps_per_epoch
        if pos >= steps_per_epoch:
            epoch += 1
            order = rng.permutation(len(images))
            pos = 0
        rows = order[pos * batch:(pos + 1) * batch]
        lr = learning_rate(schedule, base_lr, step, warmup, total)
        for group in opt.param_groups:
            group["lr"] = lr
        x = make_batch(images, rows, cfg.vision.image_size, aug, rng)
        t = torch.from_numpy(tokens[rows])
        losses = train_losses(model, x, t, patch_dropout, gen, clip_w, cap_w)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, max_logit)
        step += 1
        window.append([losses[k].item() for k in ("total", "contrastive", "caption")])
        now = time.time()
        if step == 1:
            t_first = now
        if minutes > 0 and not planned and step >= max(warmup, 4):
            per_step = (now - t_first) / max(step - 1, 1)
            left = 0.98 * (minutes * 60 - (now - t_start)) - 2 * per_step
            fit = step + max(1, int(math.floor(max(left, 0.0) / per_step)))
            planned = True
            print(f"time plan: {per_step:.3f} s per step over {step - 1} steps; "
                  f"{'the schedule now ends' if fit < total else 'the epochs end first,'} at step {min(fit, total)}",
                  flush=True)
            total = min(total, fit)
            metrics.write(json.dumps({"step": step, "time_planned_total_steps": fit, "seconds_per_step": per_step}) + "\n")
        time_up = minutes > 0 and now - t_start > minutes * 60
        if step % log_every == 0 or step >= total or time_up:
            mean = np.mean(window, axis=0)
            rate = (step - window_from) * batch / max(now - t_log, 1e-9)
            rec = {"step": step, "epoch": epoch, "lr": lr, "loss": mean[0], "contrastive_loss": mean[1],
                   "caption_loss": mean[2], "logit_scale": model.logit_scale.item(), "samples_per_s": rate}
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            print(f"step {step}/{total} loss {mean[0]:.4f} (contrastive {mean[1]:.4f}, caption {mean[2]:.4f}) "
                  f"lr {lr:.3g} {rate:.1f} samples/s", flush=True)
            window, window_from, t_log = [], step, now
        if time_up and step < total:
            stopped_by_clock = True
            print(f"stopped at step {step}: --max-minutes reached", flush=True)
            break
    seconds = time.time() - t_start
    metrics.close()
    state = {n: p.detach().float().contiguous().numpy() for n, p in model.state_dict().items()}
    write_safetensors(os.path.join(out_dir, "model.safetensors"), state)
    summary = {"system": "pytorch-reference", "torch": torch.__version__, "steps": step, "planned_steps": total,
               "train_seconds": seconds, "samples_per_s": step * batch / max(seconds, 1e-9), "global_batch": batch,
               "world_size": world, "threads": threads, "seed": seed, "stopped_by_clock": stopped_by_clock,
               "final_loss": float(losses["total"].item())}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"train_reference: {step} steps in {seconds:.0f} s -> {out_dir}/model.safetensors", flush=True)


if __name__ == "__main__":
    main()
