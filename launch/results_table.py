#!/usr/bin/env python3
"""Print (and write) the quickstart's results table: the machine (CPU model, cores used, a
one-thread sgemm rate from coca-sysinfo), the training run (steps, samples/s from
metrics.jsonl) and the zero-shot result (coca-eval zeroshot --output JSON).

usage: launch/results_table.py --sysinfo SYSINFO.txt --ranks N --threads T
           [--metrics metrics.jsonl] [--zeroshot RESULT.json] [--train-seconds S] [-o results.md]
SYSINFO.txt is the output of `build/coca-sysinfo`. Python standard library only.
"""
import argparse
import json
import statistics
import sys


def read_sysinfo(path):
    info = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
    for key in ("cpu_model", "cores_online", "sgemm_gflops_per_core"):
        if key not in info:
            sys.exit(f"results_table: {path} has no '{key}:' line (is it coca-sysinfo's output?)")
    return info


def read_metrics(path):
    rates, last_step = [], None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"results_table: {path} line {n} is not JSON ({e})")
            if "samples_per_s" in r and "step" in r:
                rates.append(float(r["samples_per_s"]))
                last_step = int(r["step"])
    return {"steps": last_step, "samples_per_s": statistics.median(rates) if rates else None}


def format_table(machine, run, zeroshot):
    """machine: cpu_model, blas_core, cores_online, ranks, threads, sgemm_gflops_per_core;
    run: steps, samples_per_s, train_seconds (each may be None); zeroshot: top1, top5,
    mean_per_class (fractions) or None. Returns the markdown table as a string."""
    used = machine["ranks"] * machine["threads"]
    cpu = machine["cpu_model"]
    if machine.get("blas_core"):
        cpu += f" (OpenBLAS {machine['blas_core']})"
    cores = f"{used} ({machine['ranks']} ranks x {machine['threads']} threads, {machine['cores_online']} online)"

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    zs = zeroshot or {}
    pct = lambda k: "-" if k not in zs else f"{100 * float(zs[k]):.2f}%"  # noqa: E731
    header = ["CPU", "cores used", "sgemm GFLOP/s per core", "steps", "train s", "samples/s", "top-1", "top-5",
              "mean per class"]
    row = [cpu, cores, num(float(machine["sgemm_gflops_per_core"]), ".1f"), num(run.get("steps"), "d"),
           num(run.get("train_seconds"), ".0f"), num(run.get("samples_per_s"), ".1f"), pct("top1"), pct("top5"),
           pct("mean_per_class")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sysinfo", required=True, help="output of build/coca-sysinfo")
    ap.add_argument("--ranks", type=int, required=True, help="MPI ranks of the run")
    ap.add_argument("--threads", type=int, required=True, help="compute threads per rank")
    ap.add_argument("--metrics", help="the run's metrics.jsonl")
    ap.add_argument("--zeroshot", help="coca-eval zeroshot --output JSON")
    ap.add_argument("--train-seconds", type=float, help="training wall time")
    ap.add_argument("-o", "--output", help="also write the table here")
    a = ap.parse_args()
    if a.ranks < 1 or a.threads < 1:
        sys.exit("results_table: --ranks and --threads must be >= 1")
    info = read_sysinfo(a.sysinfo)
    machine = dict(info, ranks=a.ranks, threads=a.threads)
    run = read_metrics(a.metrics) if a.metrics else {}
    run["train_seconds"] = a.train_seconds
    zs = None
    if a.zeroshot:
        with open(a.zeroshot) as f:
            zs = json.load(f)
    table = format_table(machine, run, zs)
    sys.stdout.write(table)
    if a.output:
        with open(a.output, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
