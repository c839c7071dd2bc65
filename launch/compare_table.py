#!/usr/bin/env python3
"""The results of launch/compare_recipe.sh: per system, zero-shot top-1, top-5 and mean-per-class
accuracy as the mean over the seeds with min-max and standard deviation, and the steps, samples/s
and wall time of each run. Reads OUT/<system>-seed<S>/{zeroshot.json, metrics.jsonl, summary.json,
wall_seconds}; writes OUT/results.md (also printed) and OUT/results.json. Standard library only.
"""
import argparse
import json
import os
import statistics
import sys

NAMES = {"coca": "coca (`coca-train`)", "torch": "PyTorch reference (`tests/reference/train_reference.py`)"}
METRICS = [("top1", "top-1"), ("top5", "top-5"), ("mean_per_class", "mean per class")]


def fail(msg):
    sys.exit(f"compare_table: {msg}")


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"cannot read {path}: {e}")


def read_run(run_dir):
    zs = read_json(os.path.join(run_dir, "zeroshot.json"))
    steps, rates = 0, []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if "step" in r and "loss" in r:
                steps = max(steps, int(r["step"]))
                if "samples_per_s" in r:
                    rates.append(float(r["samples_per_s"]))
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):  # the reference: its own count (the last window may be short)
        steps = int(read_json(summary_path)["steps"])
    with open(os.path.join(run_dir, "wall_seconds")) as f:
        wall = float(f.read().strip())
    load = []
    for name in ("load_before", "load_after"):  # the 1-minute load average around the run
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                load.append(float(f.read().strip()))
    run = {m: 100.0 * float(zs[m]) for m, _ in METRICS}
    run.update({"steps": steps, "samples_per_s": statistics.median(rates) if rates else None, "wall_seconds": wall,
                "images": zs.get("images"), "load_average": load})
    for m, _ in METRICS:
        if not 0.0 <= run[m] <= 100.0:
            fail(f"{run_dir}: {m} = {run[m]} is not a percentage")
    return run


def spread(values):
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def cell(s, unit="%"):
    if len(s["values"]) == 1:
        return f"{s['mean']:.2f}{unit}"
    return f"{s['mean']:.2f}{unit} ({s['min']:.2f}-{s['max']:.2f}, sd {s['std']:.2f})"


def read_sysinfo(path):
    info = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, sep, v = line.partition(":")
                if sep:
                    info[k.strip()] = v.strip()
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--systems", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", required=True)
    for key in ("split", "train-data", "eval-data", "minutes", "ranks", "threads", "sysinfo", "command"):
        ap.add_argument("--" + key, default="")
    a = ap.parse_args()
    info = read_sysinfo(a.sysinfo)
    results = {"command": a.command, "split": a.split, "train_data": a.train_data, "eval_data": a.eval_data,
               "minutes": float(a.minutes or 0), "ranks": int(a.ranks or 1), "threads_per_rank": int(a.threads or 1),
               "machine": info, "seeds": a.seeds, "systems": {}}
    for system in a.systems:
        runs = {seed: read_run(os.path.join(a.out, f"{system}-seed{seed}")) for seed in a.seeds}
        agg = {m: spread([runs[s][m] for s in a.seeds]) for m, _ in METRICS}
        agg["steps"] = spread([float(runs[s]["steps"]) for s in a.seeds])
        agg["wall_minutes"] = spread([runs[s]["wall_seconds"] / 60 for s in a.seeds])
        results["systems"][system] = {"summary": agg, "runs": runs}

    used = results["ranks"] * results["threads_per_rank"]
    lines = [f"Command: `{a.command}`", "",
             f"Split: {a.split} (train `{a.train_data}`, zero-shot `{a.eval_data}`); {a.minutes} minutes of training "
             f"per run; seeds {' '.join(a.seeds)}; both evaluated by `coca-eval zeroshot`.",
             f"Machine: {info.get('cpu_model', '?')} (OpenBLAS {info.get('blas_core', '?')} kernels, "
             f"{info.get('cores_online', '?')} cores online); coca {results['ranks']} ranks x "
             f"{results['threads_per_rank']} threads, the reference 1 process x {used} threads with the same global batch.",
             "", "Mean over seeds (min-max, sd):", "",
             "| system | top-1 | top-5 | mean per class | steps | wall minutes (train + start) |", "|---|---|---|---|---|---|"]
    for system in a.systems:
        s = results["systems"][system]["summary"]
        st = s["steps"]
        steps = f"{st['mean']:.0f}" if st["min"] == st["max"] else f"{st['mean']:.0f} ({st['min']:.0f}-{st['max']:.0f})"
        lines.append(f"| {NAMES.get(system, system)} | {cell(s['top1'])} | {cell(s['top5'])} | "
                     f"{cell(s['mean_per_class'])} | {steps} | {s['wall_minutes']['mean']:.1f} |")
    lines += ["", "Per run (load: the machine's 1-minute load average before and after the run):", "",
              "| system | seed | top-1 | top-5 | mean per class | steps | samples/s | wall s | load |",
              "|---|---|---|---|---|---|---|---|---|"]
    for system in a.systems:
        for seed in a.seeds:
            r = results["systems"][system]["runs"][seed]
            rate = f"{r['samples_per_s']:.1f}" if r["samples_per_s"] is not None else "-"
            load = "/".join(f"{x:.1f}" for x in r["load_average"]) or "-"
            lines.append(f"| {system} | {seed} | {r['top1']:.2f}% | {r['top5']:.2f}% | {r['mean_per_class']:.2f}% | "
                         f"{r['steps']} | {rate} | {r['wall_seconds']:.0f} | {load} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(text, end="")


if __name__ == "__main__":
    main()
