"""The PyTorch training step on the same GPU, as strong as what OpenCLIP users run, for the
ratio against coca's.

    python3 tests/gpu/bench_torch.py CONFIG.json --batch 512 --precision amp_bf16 --steps 10 [--compile]

The model is tests/reference/coca_reference.py with PyTorch's fused primitives swapped in:
F.scaled_dot_product_attention (flash / memory-efficient kernels; the boolean visibility
masks become SDPA's attn_mask), F.linear, F.layer_norm, F.gelu; AdamW(fused=True).
--compile wraps the model in torch.compile (default mode), as `open_clip_train --torchcompile`
does. PRECISION: fp32 (TF32 off), tf32, or amp_bf16 (torch.autocast bf16, float32 master
weights). One step: forward, both CoCa losses, backward, grad-norm clip, AdamW.
Prints one `[bench] torch ...` line with samples/s, MFU and reserved memory.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import coca_reference as ref  # noqa: E402


def sdpa_forward(self, q_in, kv_in, visible=None):
    wq, wk, wv, bq, bk, bv = self.qkv_weights()
    B, Lq, _ = q_in.shape
    Lk = kv_in.shape[1]
    H, hd = self.heads, self.head_dim
    if self.packed and q_in is kv_in:
        q, k, v = F.linear(q_in, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
    else:
        q, k, v = F.linear(q_in, wq, bq), F.linear(kv_in, wk, bk), F.linear(kv_in, wv, bv)
    q = q.reshape(B, Lq, H, hd).transpose(1, 2)
    k = k.reshape(B, Lk, H, hd).transpose(1, 2)
    v = v.reshape(B, Lk, H, hd).transpose(1, 2)
    mask = None
    if visible is not None:
        mask = visible if visible.dim() == 3 else visible.unsqueeze(0)
        mask = mask.unsqueeze(1)  # [B or 1, 1, Lq, Lk], True = attend
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return self.out_proj(o.transpose(1, 2).reshape(B, Lq, self.d))


def fast_primitives():
    ref.LayerNorm.forward = lambda self, x: F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)
    ref.Linear.forward = lambda self, x: F.linear(x, self.weight, self.bias)
    ref.gelu_erf = lambda x: F.gelu(x)
    ref.Mlp.forward = lambda self, x: self.c_proj(F.gelu(self.c_fc(x)))
    ref.MultiheadAttention.forward = sdpa_forward


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="amp_bf16", choices=["fp32", "tf32", "amp_bf16"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--fwd-gflop", type=float, default=33.1, help="forward GFLOP per sample (ViT-B-32 at 224)")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    fast_primitives()
    dev = torch.device("cuda")
    cfg = ref.load_config(a.config)
    model = ref.CoCa(cfg, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or "embedding" in name or "cls_emb" in name:
                p.normal_(0.0, 0.02, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2,
                            fused=True)
    fwd = torch.compile(model) if a.compile else model
    L, V, S = cfg.text.context_length, cfg.text.vocab_size, cfg.vision.image_size
    images = torch.randn(a.batch, 3, S, S, device=dev)
    text = torch.zeros(a.batch, L, dtype=torch.long, device=dev)
    lengths = torch.randint(8, L, (a.batch,))
    for b in range(a.batch):
        n = int(lengths[b])
        text[b, 0] = V - 2
        text[b, 1:n - 1] = torch.randint(1, V - 2, (n - 2,), device=dev)
        text[b, n - 1] = V - 1

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.precision == "amp_bf16"):
            out = fwd(images, text)
            total = ref.coca_losses(out, text, 0)["total"]
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return total

    t0 = time.perf_counter()
    for _ in range(3 if a.compile else 2):
        step()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    sps = a.batch / median
    mfu = 3 * a.fwd_gflop * 1e9 * sps / 989e12
    variant = "compile" if a.compile else "eager"
    print(f"[bench] torch {variant} device=\"{torch.cuda.get_device_name()}\" torch={torch.__version__} "
          f"batch={a.batch} precision={a.precision} step_median={median:.4f} s samples/s={sps:.1f} "
          f"MFU={100 * mfu:.2f}% loss={loss.item():.4f} reserved={torch.cuda.max_memory_reserved() / 2**30:.2f} GiB "
          f"warmup={warm:.1f} s", flush=True)


if __name__ == "__main__":
    main()
