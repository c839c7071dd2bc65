#!/usr/bin/python3
"""Generate the golden files in tests/reference/golden/.

    /usr/bin/python3 tests/reference/make_golden.py

For each micro config (CoCa: micro, micro_kv, micro_nopool; CLIP: micro_clip,
micro_clip_custom) writes
    golden/<cfg>.json                  config in OpenCLIP's schema
    golden/<cfg>_weights.safetensors   float32 weights, exact OpenCLIP names, state_dict order
    golden/<cfg>_io.safetensors        inputs, outputs, losses, gradients (float32 / int32)
Weights and images are drawn in float32 (numpy RandomState, fixed seeds), then the whole
computation runs in float64 from exactly those float32 values; results are rounded to
float32 when saved.
"""
import collections
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from coca_reference import (build_model, clip_text_to_custom_name, load_config,  # noqa: E402
                            model_losses)
from safetensors_io import write_safetensors  # noqa: E402

GOLDEN = os.path.join(HERE, "golden")
BATCH = 3
CLIP_W, CAP_W = 1.0, 2.0
WEIGHT_STD = 0.2

MICRO = {
    "embed_dim": 16,
    "vision_cfg": {
        "image_size": 16,
        "layers": 2,
        "width": 16,
        "head_width": 8,
        "patch_size": 8,
        "attentional_pool": True,
        "attn_pooler_queries": 5,
        "attn_pooler_heads": 2,
        "output_tokens": True,
    },
    "text_cfg": {
        "context_length": 7,
        "vocab_size": 50,
        "width": 16,
        "heads": 2,
        "layers": 2,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {
        "context_length": 7,
        "vocab_size": 50,
        "width": 16,
        "heads": 2,
        "layers": 2,
    },
    "custom_text": True,
}


def micro_kv_config():
    cfg = json.loads(json.dumps(MICRO))
    cfg["vision_cfg"]["width"] = 24          # != embed_dim 16 -> q/k/v_proj_weight
    cfg["text_cfg"]["correct_cls_mask"] = True
    return cfg


def micro_nopool_config():
    """CoCa without attentional pooler (OpenCLIP coca_base style): embed_dim 12 != widths 16."""
    cfg = json.loads(json.dumps(MICRO))
    cfg["embed_dim"] = 12
    v = cfg["vision_cfg"]
    del v["attn_pooler_queries"], v["attn_pooler_heads"]
    v["attentional_pool"] = False
    return cfg


def micro_clip_config(custom_text=False):
    """CLIP (no multimodal_cfg): vision without pooler, text without CLS (argmax pooling)."""
    cfg = {
        "embed_dim": 12,
        "vision_cfg": {"image_size": 16, "layers": 2, "width": 16, "head_width": 8,
                       "patch_size": 8},
        "text_cfg": {"context_length": 7, "vocab_size": 50, "width": 16, "heads": 2,
                     "layers": 2},
    }
    if custom_text:
        cfg["custom_text"] = True
    return cfg


CONFIGS = collections.OrderedDict([
    ("micro", (MICRO, 1234)),
    ("micro_kv", (micro_kv_config(), 5678)),
    ("micro_nopool", (micro_nopool_config(), 2468)),
    ("micro_clip", (micro_clip_config(False), 1357)),
    ("micro_clip_custom", (micro_clip_config(True), 1357)),
])

# micro_clip_custom carries micro_clip's weight values (renamed to text.*) and inputs
SHARED_WEIGHTS = {"micro_clip_custom": "micro_clip"}

# real lengths (incl. start and end) of the three token rows; padding 0 / 3 / 1
TOKEN_LENGTHS = (7, 4, 6)
# new goldens: no padding / [start, end] only / padding 2
TOKEN_LENGTHS_BY_NAME = {"micro_nopool": (7, 2, 5), "micro_clip": (7, 2, 5),
                         "micro_clip_custom": (7, 2, 5)}


def fill_golden_weights(model, seed):
    """Float32 random weights (returned as an ordered dict of numpy arrays) and copied into
    the model. LayerNorm: weight 1 + N(0, std), bias N(0, std); logit_scale ln(1/0.07);
    everything else N(0, std)."""
    rng = np.random.RandomState(seed)
    weights = collections.OrderedDict()
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        module = name.split(".")[-2] if "." in name else ""
        if name == "logit_scale":
            a = np.array(math.log(1.0 / 0.07), dtype=np.float32).reshape(shape)
        elif module.startswith("ln_") and name.endswith(".weight"):
            a = (1.0 + WEIGHT_STD * rng.standard_normal(shape)).astype(np.float32)
        else:
            a = (WEIGHT_STD * rng.standard_normal(shape)).astype(np.float32)
        weights[name] = a
    load_weights(model, weights)
    return weights


def load_weights(model, weights):
    sd = model.state_dict()
    assert list(sd.keys()) == list(weights.keys())
    with torch.no_grad():
        for name, p in sd.items():
            p.copy_(torch.from_numpy(np.asarray(weights[name])).to(p.dtype))


def golden_inputs(cfg, seed, lengths=TOKEN_LENGTHS):
    rng = np.random.RandomState(seed)
    v, t = cfg.vision, cfg.text
    images = rng.standard_normal((BATCH, 3, v.image_size, v.image_size)).astype(np.float32)
    L, V = t.context_length, t.vocab_size
    start, end = V - 2, V - 1
    tokens = np.full((BATCH, L), t.pad_id, dtype=np.int32)
    for b, n in enumerate(lengths):
        assert 2 <= n <= L
        tokens[b, 0] = start
        tokens[b, 1:n - 1] = rng.randint(1, V - 2, size=n - 2)  # ids in [1, V-3]
        tokens[b, n - 1] = end
    return images, tokens


def run_reference(model, images, tokens, dtype=torch.float64):
    """Forward + losses + backward of the total loss, in `dtype`. Returns (out, losses, grads)."""
    model = model.to(dtype)
    model.zero_grad(set_to_none=True)
    img = torch.from_numpy(images).to(dtype)
    txt = torch.from_numpy(tokens)
    out = model(img, txt)
    losses = model_losses(out, txt, model.cfg.text.pad_id, CLIP_W, CAP_W)
    losses["total"].backward()
    grads = collections.OrderedDict(
        (n, p.grad.detach().clone()) for n, p in model.named_parameters())
    return out, losses, grads


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def io_tensors(images, tokens, out, losses, grads):
    if "caption_logits" not in out:
        return clip_io_tensors(images, tokens, out, losses, grads)
    io = collections.OrderedDict()
    io["images"] = images
    io["tokens"] = tokens
    io["image_features"] = f32(out["image_features"])
    io["text_features"] = f32(out["text_features"])
    io["caption_logits"] = f32(out["caption_logits"])
    io["contrastive_loss"] = f32(losses["contrastive"])
    io["caption_loss"] = f32(losses["caption"])
    io["total_loss"] = f32(losses["total"])
    io["logits_per_image"] = f32(losses["logits_per_image"])
    io["image_latent"] = f32(out["image_latent"])
    io["image_embs"] = f32(out["image_embs"])
    io["vision_trunk"] = f32(out["vision_trunk"])
    io["text_latent"] = f32(out["text_latent"])
    io["text_cls_pre_ln"] = f32(out["text_cls_pre_ln"])
    io["text_token_embs"] = f32(out["text_token_embs"])
    io["text_cls_visible"] = out["text_visible"][:, -1, :].to(torch.int32).numpy()
    for name, g in grads.items():
        io["grad/" + name] = f32(g)
    return io


def clip_io_tensors(images, tokens, out, losses, grads):
    io = collections.OrderedDict()
    io["images"] = images
    io["tokens"] = tokens
    io["image_features"] = f32(out["image_features"])
    io["text_features"] = f32(out["text_features"])
    io["contrastive_loss"] = f32(losses["contrastive"])
    io["total_loss"] = f32(losses["total"])
    io["logits_per_image"] = f32(losses["logits_per_image"])
    io["image_latent"] = f32(out["image_latent"])
    io["image_embs"] = f32(out["image_embs"])
    io["vision_trunk"] = f32(out["vision_trunk"])
    io["text_latent"] = f32(out["text_latent"])
    if "text_trunk" in out:
        io["text_trunk"] = f32(out["text_trunk"])
        io["text_pool_index"] = out["text_pool_index"].to(torch.int32).numpy()
    for name, g in grads.items():
        io["grad/" + name] = f32(g)
    return io


def build(name):
    cfg_dict, seed = CONFIGS[name]
    cfg_path = os.path.join(GOLDEN, name + ".json")
    cfg = load_config(cfg_dict)
    model = build_model(cfg, dtype=torch.float32)
    if name in SHARED_WEIGHTS:
        # same values as the source config, under this model's names and order
        src = build(SHARED_WEIGHTS[name])
        renamed = {clip_text_to_custom_name(k): v for k, v in src[4].items()}
        weights = collections.OrderedDict((k, renamed[k]) for k in model.state_dict())
        assert len(weights) == len(renamed)
        load_weights(model, weights)
    else:
        weights = fill_golden_weights(model, seed)
    images, tokens = golden_inputs(cfg, seed + 1, TOKEN_LENGTHS_BY_NAME.get(name, TOKEN_LENGTHS))
    return cfg_path, cfg_dict, cfg, model, weights, images, tokens


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    torch.set_num_threads(1)
    for name in CONFIGS:
        cfg_path, cfg_dict, cfg, model, weights, images, tokens = build(name)
        with open(cfg_path, "w") as f:
            json.dump(cfg_dict, f, indent=2)
            f.write("\n")
        # the written JSON must parse back to the same config
        assert load_config(cfg_path) == cfg

        out, losses, grads = run_reference(model, images, tokens, torch.float64)
        write_safetensors(os.path.join(GOLDEN, name + "_weights.safetensors"), weights)
        write_safetensors(os.path.join(GOLDEN, name + "_io.safetensors"),
                          io_tensors(images, tokens, out, losses, grads))

        # float32 run of the same reference, to show the float32-vs-float64 gap
        out32, losses32, grads32 = run_reference(model, images, tokens, torch.float32)

        def rel(a, b):
            a, b = a.double(), b.double()
            return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()

        coca = "caption_logits" in out
        cap = f"caption={losses['caption'].item():.6f} " if coca else ""
        print(f"[{name}] contrastive={losses['contrastive'].item():.6f} "
              f"{cap}total={losses['total'].item():.6f}")
        print(f"[{name}] logits_per_image=\n{losses['logits_per_image'].detach().numpy()}")
        if coca:
            print(f"[{name}] caption_logits std={out['caption_logits'].std().item():.4f} "
                  f"text_cls_visible=\n{out['text_visible'][:, -1].int().numpy()}")
        else:
            print(f"[{name}] text_pool_index={out['text_pool_index'].tolist()}")
        worst = max(rel(grads32[n], grads[n]) for n in grads)
        capr = (f"caption_logits {rel(out32['caption_logits'], out['caption_logits']):.2e}, "
                if coca else "")
        print(f"[{name}] float32 vs float64: total rel {rel(losses32['total'], losses['total']):.2e}, "
              f"{capr}"
              f"features {rel(out32['image_features'], out['image_features']):.2e}/"
              f"{rel(out32['text_features'], out['text_features']):.2e}, "
              f"worst grad (max-abs-normalised) {worst:.2e}")
        zero = [n for n, g in grads.items() if g.abs().max().item() == 0.0]
        assert not zero, f"parameters with all-zero gradient: {zero}"
    for fn in sorted(os.listdir(GOLDEN)):
        print(f"{fn}\t{os.path.getsize(os.path.join(GOLDEN, fn))}")


if __name__ == "__main__":
    main()
