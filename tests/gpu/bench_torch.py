"""The PyTorch reference's training step on the same GPU, for the ratio against coca's.

    python3 tests/gpu/bench_torch.py CONFIG.json BATCH PRECISION STEPS [FWD_GFLOP]

PRECISION: fp32 (TF32 off) or amp_bf16 (torch.autocast bf16, float32 master weights).
One step: forward, both CoCa losses, backward, grad-norm clip, fused AdamW.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import coca_reference as ref  # noqa: E402


def main():
    cfg_path, batch, precision, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    fwd_gflop = float(sys.argv[5]) if len(sys.argv) > 5 else 33.1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    cfg = ref.load_config(cfg_path)
    model = ref.CoCa(cfg, device=dev)
    g = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or "embedding" in name or "cls_emb" in name:
                p.normal_(0.0, 0.02, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2,
                            fused=True)
    L, V, S = cfg.text.context_length, cfg.text.vocab_size, cfg.vision.image_size
    images = torch.randn(batch, 3, S, S, device=dev)
    text = torch.zeros(batch, L, dtype=torch.long, device=dev)
    lengths = torch.randint(8, L, (batch,))
    for b in range(batch):
        n = int(lengths[b])
        text[b, 0] = V - 2
        text[b, 1:n - 1] = torch.randint(1, V - 2, (n - 2,), device=dev)
        text[b, n - 1] = V - 1

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "amp_bf16"):
            out = model(images, text)
            total = ref.coca_losses(out, text, 0)["total"]
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return total

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    sps = batch / median
    mfu = 3 * fwd_gflop * 1e9 * sps / 989e12
    print(f"[bench] torch device=\"{torch.cuda.get_device_name()}\" batch={batch} precision={precision} "
          f"step_median={median:.4f} s samples/s={sps:.1f} MFU={100 * mfu:.2f}% loss={loss.item():.4f} "
          f"max_mem={torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)


if __name__ == "__main__":
    main()
