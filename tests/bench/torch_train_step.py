#!/usr/bin/env python3
"""One CoCa training step (forward, backward, AdamW) in PyTorch, for bench_train_step.

Builds the model from tests/reference/coca_reference.py with the fused PyTorch primitives
(F.linear, F.layer_norm, F.gelu) swapped in, so PyTorch runs at its best on the CPU.
Prints one JSON line: {"samples_per_s": ..., "step_ms": ..., "threads": ...}.

usage: torch_train_step.py CONFIG.json --batch 64 --steps 5 --threads N
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import coca_reference as ref  # noqa: E402


def fast_primitives():
    ref.LayerNorm.forward = lambda self, x: F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)
    ref.Linear.forward = lambda self, x: F.linear(x, self.weight, self.bias)
    ref.gelu_erf = lambda x: F.gelu(x)
    ref.Mlp.forward = lambda self, x: self.c_proj(F.gelu(self.c_fc(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--caption-tokens", default="8-30", help="caption lengths LO-HI in tokens (as bench_train_step)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fast_primitives()
    cfg = ref.load_config(a.config)
    model = ref.CoCa(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "ln_" in n and n.endswith("weight"):
                p.fill_(1.0)
            elif n != "logit_scale":
                p.normal_(0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    B, L, V, S = a.batch, cfg.text.context_length, cfg.text.vocab_size, cfg.vision.image_size
    lo, hi = (int(v) for v in a.caption_tokens.split("-"))
    images = torch.randn(B, 3, S, S)
    text = torch.zeros(B, L, dtype=torch.long)
    for b in range(B):
        n = lo + (b * 7) % (hi - lo + 1)
        text[b, 0] = V - 2
        text[b, 1:n - 1] = torch.randint(1, V - 3, (n - 2,))
        text[b, n - 1] = V - 1

    def step():
        out = model(images, text)
        loss = ref.coca_losses(out, text)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    print(json.dumps({"samples_per_s": B / dt, "step_ms": dt * 1e3, "threads": a.threads,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
