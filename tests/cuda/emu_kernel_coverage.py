#!/usr/bin/env python3
"""Launch count of every kernel in src/kernels/cuda/ over the cuda-emu suite.

Usage: emu_kernel_coverage.py <launch log> <src/kernels/cuda>. The log is what the emulator
appends at each process's exit (COCA_EMU_LAUNCH_LOG: "<count>\\t<kernel instantiation>").
Prints one line per kernel (total launches, instantiations seen) and fails when a kernel of the
sources never ran.
"""
import collections
import pathlib
import re
import sys

log, src = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
kernels = set()
for f in sorted(src.glob("*.cu")):
    text = f.read_text()
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)\s*\(", text):
        kernels.add(m.group(1))
counts = collections.Counter()
insts = collections.defaultdict(set)
if log.exists():
    for line in log.read_text().splitlines():
        n, _, name = line.partition("\t")
        base = name.split("<")[0].split("::")[-1]
        counts[base] += int(n)
        insts[base].add(name)
print(f"[cuda-emu] launches per kernel over the suite ({len(kernels)} kernels in {src}):")
for k in sorted(kernels, key=lambda k: -counts[k]):
    shown = ", ".join(sorted(insts[k])[:4]) + (" ..." if len(insts[k]) > 4 else "")
    print(f"  {counts[k]:>9}  {k:<30} {shown}")
missing = sorted(k for k in kernels if counts[k] == 0)
if missing:
    print(f"[cuda-emu] FAIL: never launched: {', '.join(missing)}")
    sys.exit(1)
print(f"[cuda-emu] every kernel ran: {sum(counts[k] for k in kernels)} launches of {len(kernels)} kernels")
