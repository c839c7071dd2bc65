#!/usr/bin/env python3
"""Plot a coca-train metrics.jsonl: loss (total, contrastive, caption, and the --val-data
validation loss), learning rate, throughput, zero-shot accuracy and validation retrieval R@1
against the step, into one PNG.

usage: launch/plot_metrics.py logs/<run>/metrics.jsonl [-o metrics.png] [--zeroshot RESULT.json]
--zeroshot adds a `coca-eval zeroshot --output` result (evaluated after training) to the
zero-shot panel, at the run's last step.
Needs Debian's python3-matplotlib.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics")
    ap.add_argument("-o", "--output", default=None)
    ap.add_argument("--zeroshot", default=None, help="coca-eval zeroshot --output JSON of the final weights")
    a = ap.parse_args()
    steps, evals, vals = [], [], []
    with open(a.metrics) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "zeroshot_top1" in r:
                evals.append(r)
            elif "val_loss" in r:
                vals.append(r)
            elif "loss" in r:
                steps.append(r)
    if not steps:
        sys.exit(f"plot_metrics: no step records in {a.metrics}")
    x = [r["step"] for r in steps]
    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    for key, label in (("loss", "total"), ("contrastive_loss", "contrastive"), ("caption_loss", "caption")):
        ax[0][0].plot(x, [r[key] for r in steps], label=label)
    if vals:
        ax[0][0].plot([r["step"] for r in vals], [r["val_loss"] for r in vals], "o-", label="validation total")
    ax[0][0].set_title("loss")
    ax[0][0].legend()
    ax[0][1].plot(x, [r["lr"] for r in steps])
    ax[0][1].set_title("learning rate")
    ax[1][0].plot(x, [r["samples_per_s"] for r in steps], label="global")
    ax[1][0].plot(x, [r["samples_per_s_per_rank"] for r in steps], label="per rank")
    ax[1][0].set_title("samples/s")
    ax[1][0].legend()
    if evals:
        ex = [r["step"] for r in evals]
        ax[1][1].plot(ex, [100 * r["zeroshot_top1"] for r in evals], "o-", label="top-1")
        ax[1][1].plot(ex, [100 * r["zeroshot_top5"] for r in evals], "o-", label="top-5")
        ax[1][1].legend()
    if vals:
        vx = [r["step"] for r in vals]
        ax[1][1].plot(vx, [100 * r["val_image_to_text_R@1"] for r in vals], "^-", label="val image->text R@1")
        ax[1][1].plot(vx, [100 * r["val_text_to_image_R@1"] for r in vals], "v-", label="val text->image R@1")
        ax[1][1].legend()
    if a.zeroshot:
        with open(a.zeroshot) as f:
            z = json.load(f)
        last = x[-1]
        ax[1][1].plot([last], [100 * z["top1"]], "s", color="C2", label=f"final top-1 {100 * z['top1']:.2f}%")
        ax[1][1].plot([last], [100 * z["top5"]], "s", color="C3", label=f"final top-5 {100 * z['top5']:.2f}%")
        ax[1][1].legend()
    ax[1][1].set_title("zero-shot accuracy, validation retrieval (%)")
    for row in ax:
        for p in row:
            p.set_xlabel("step")
            p.grid(alpha=0.3)
    fig.tight_layout()
    out = a.output or a.metrics.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=100)
    print(f"plot_metrics: wrote {out}")


if __name__ == "__main__":
    main()
