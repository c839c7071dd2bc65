#!/usr/bin/env bash
# coca-train and coca-eval on the GPU, end to end (label cuda; cuda-emu in the emulated build). Exits 77 (skipped) where this
# build has no CUDA backend or the host no GPU. Checks: --device cuda --precision fp32 tracks
# the CPU run step by step and ends at the same weights (all but the key part of each
# in_proj_bias, which has no effect; see below); amp_bf16 trains (loss goes down,
# everything finite); a GPU checkpoint resumes on the GPU with the uninterrupted losses;
# zero-shot on the GPU agrees with the CPU; params.json records the device.
# usage: test_train_cuda.sh BUILD_DIR   (BUILD_DIR/coca-train, coca-eval, tests/train/make_train_fixture;
# COCA_TEST_BIN_DIR: where coca-train and coca-eval are instead, BUILD_DIR/emu for the cuda-emu copy)
# COCA_TEST_GPU_DEVICE=cpu runs every "GPU" step on the CPU instead: a check of this script's
# own logic on a machine without a GPU (every comparison is then CPU against CPU).
set -u
build=$1
gpu=${COCA_TEST_GPU_DEVICE:-cuda}
bin=${COCA_TEST_BIN_DIR:-$build}  # coca-train and coca-eval (build/emu/ for the cuda-emu copy)
train="$bin/coca-train"
work=$(mktemp -d /tmp/coca-train-cuda.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
fail=0
check() {  # check <description> <condition-command...>
  local what=$1; shift
  if "$@"; then echo "PASS $what"; else echo "FAIL $what"; fail=1; fi
}

"$build/tests/train/make_train_fixture" "$work/fx" >/dev/null || { echo "FAIL fixture"; exit 1; }
common=(--train-data "$work/fx/train" --model-config "$work/fx/model.json" --batch-size 8 --workers 1
        --logs "$work/logs" --warmup 2 --lr 2e-3 --log-every-n-steps 1 --save-frequency 0 --seed 3)

probe=$("$train" "${common[@]}" --name probe --max-steps 1 --device "$gpu" 2>&1)
if [ $? -ne 0 ]; then
  if printf '%s' "$probe" | grep -q "no CUDA device is visible\|no CUDA backend"; then
    echo "SKIP: $(printf '%s' "$probe" | head -1)"
    exit 77
  fi
  echo "FAIL the one-step GPU run: $probe"
  exit 1
fi

# 1. fp32 (TF32 off) on the GPU tracks the CPU: every step's loss and the final weights.
"$train" "${common[@]}" --name cpu --max-steps 12 --device cpu >"$work/cpu.log" 2>&1
check "CPU run exits 0" test $? -eq 0
"$train" "${common[@]}" --name gpu --max-steps 12 --device "$gpu" --precision fp32 >"$work/gpu.log" 2>&1
check "GPU fp32 run exits 0" test $? -eq 0
cat > "$work/st.py" <<'PY'
import json, struct, sys
from array import array
def load(path):  # float32 tensors of a safetensors file, by name
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, d in header.items():
        if name == "__metadata__" or d["dtype"] != "F32":
            continue
        a = array("f")
        a.frombytes(data[d["data_offsets"][0]:d["data_offsets"][1]])
        out[name] = a
    return out
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
def key_bias(name, t):  # (the key third of an in_proj_bias [3D]: rows [D, 2D)), or None
    return t[len(t) // 3:2 * len(t) // 3] if name.endswith("in_proj_bias") else None
def compared(name, t):  # what the final-weights check compares: all but key_bias
    return t[:len(t) // 3] + t[2 * len(t) // 3:] if name.endswith("in_proj_bias") else t
PY
# What a step waits for: on the GPU one device-to-host copy (the losses and the gradient norm,
# together), none on the CPU; three host collectives (the caption token count, the finite-step
# consensus and the stop check; the last step makes no stop check, the first one more to check
# that the ranks gather equal row counts). Logging, evaluation and checkpoints are not counted.
check "a step makes 1 device-to-host copy on the GPU, 0 on the CPU, and at most 3 host collectives" \
  python3 - "$work/logs/cpu/metrics.jsonl" "$work/logs/gpu/metrics.jsonl" "$gpu" <<'PY'
import json, sys
rows = lambda p: [r for r in map(json.loads, open(p)) if "d2h_copies_per_step" in r and r["step"] > 1]
cpu, gpu = rows(sys.argv[1]), rows(sys.argv[2])
want_gpu = 1 if sys.argv[3] == "cuda" else 0
d2h_cpu = sorted({r["d2h_copies_per_step"] for r in cpu})
d2h_gpu = sorted({r["d2h_copies_per_step"] for r in gpu})
coll = sorted({r["host_collectives_per_step"] for r in cpu + gpu})
print("d2h per step: cpu", d2h_cpu, "gpu", d2h_gpu, "| host collectives per step", coll)
sys.exit(0 if len(cpu) == 11 and len(gpu) == 11 and d2h_cpu == [0] and d2h_gpu == [want_gpu] and max(coll) <= 3 else 1)
PY
check "GPU fp32 losses track the CPU's (relative gap <= 1e-4 every step)" python3 - "$work" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); from st import losses
a, b = losses(sys.argv[1] + "/logs/cpu/metrics.jsonl"), losses(sys.argv[1] + "/logs/gpu/metrics.jsonl")
gaps = [abs(a[s] - b[s]) / max(1.0, abs(a[s])) for s in a if s in b]
print("steps", len(gaps), "worst relative loss gap %.2e" % max(gaps), "cpu", round(a[12], 6), "gpu", round(b[12], 6))
sys.exit(0 if len(gaps) == 12 and max(gaps) <= 1e-4 else 1)
PY
# The key part of every in_proj_bias (rows [D, 2D) of the [3D] vector, D the embedding width)
# only adds q . b_k to all of a query's scores, which softmax ignores: its true gradient is zero
# and its value has no effect on any output. What backward computes for it is rounding noise,
# different on the GPU and the CPU, and AdamW normalises that noise by its own sqrt(v), so the
# key biases move (to ~1e-5 here after 12 steps, the q and v parts to ~5e-3) along a different
# random path on each device: the whole in_proj_bias then differs by NMSE 7.7e-5..1.4e-4 on an
# H200, a new value each run, while nothing the two models compute differs. So that part is left
# out (it must only stay finite); every other weight, the q and v parts included, keeps the
# tolerance, and the loss check above tracks the outputs step by step.
check "GPU fp32 final weights equal the CPU's (NMSE <= 1e-6 per tensor, key part of in_proj_bias aside)" \
  python3 - "$work" <<'PY'
import math, sys; sys.path.insert(0, sys.argv[1]); from st import load, compared, key_bias
w = sys.argv[1] + "/logs/%s/checkpoints/step_000012/model.safetensors"
a, b = load(w % "cpu"), load(w % "gpu")
worst, name, biases = 0.0, "", 0
for k in a:
    if k not in b or len(a[k]) != len(b[k]):
        print("missing or resized in the GPU run:", k); sys.exit(1)
    x, y = compared(k, a[k]), compared(k, b[k])
    num = sum((p - q) ** 2 for p, q in zip(x, y)); den = sum(p * p for p in x)
    e = num / den if den else num
    if math.isnan(e): e = math.inf
    if e > worst: worst, name = e, k
    if key_bias(k, b[k]) is not None:
        biases += 1
        if not all(math.isfinite(v) for v in key_bias(k, b[k])):
            print("non-finite key bias in the GPU run:", k); sys.exit(1)
print("tensors", len(a), "worst weight nmse %.2e (%s); key part of %d in_proj_bias left out" % (worst, name, biases))
sys.exit(0 if len(a) == len(b) and len(a) > 0 and biases > 0 and worst <= 1e-6 else 1)
PY
check "params.json records $gpu and fp32" python3 -c "
import json,sys; p=json.load(open('$work/logs/gpu/params.json')); print(p.get('device'), p.get('precision'), p.get('gpu'))
sys.exit(0 if p.get('device') == '$gpu' and p.get('precision') == 'fp32' else 1)"

# 2. amp_bf16 (the default on cuda) trains: loss goes down, nothing non-finite.
# (COCA_TEST_AMP_EPOCHS: the emulated build's label runs 1 (32 steps), enough for the loss test.)
"$train" "${common[@]}" --name amp --epochs "${COCA_TEST_AMP_EPOCHS:-6}" --device "$gpu" >"$work/amp.log" 2>&1
check "GPU amp_bf16 run exits 0" test $? -eq 0
check "amp_bf16 loss goes down" python3 - "$work" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); from st import losses
l = [v for _, v in sorted(losses(sys.argv[1] + "/logs/amp/metrics.jsonl").items())]
print("losses", [round(x, 3) for x in l[:3]], "...", [round(x, 3) for x in l[-3:]])
sys.exit(0 if len(l) >= 6 and sum(l[-3:]) < 0.8 * sum(l[:3]) else 1)
PY
check "amp_bf16 skipped no step" test -z "$(grep -l "has a non-finite" "$work/amp.log")"

# 3. A GPU checkpoint resumes on the GPU with the uninterrupted run's losses.
"$train" "${common[@]}" --name full --max-steps 8 --save-every-n-steps 4 --device "$gpu" --precision fp32 >"$work/full.log" 2>&1
"$train" "${common[@]}" --name resumed --max-steps 8 --device "$gpu" --precision fp32 \
  --resume "$work/logs/full/checkpoints/step_000004" >"$work/resumed.log" 2>&1
check "GPU resume exits 0" test $? -eq 0
check "GPU resumed losses equal uninterrupted ones (relative 1e-5)" python3 - "$work" <<'PY'
import sys; sys.path.insert(0, sys.argv[1]); from st import losses
a, b = losses(sys.argv[1] + "/logs/full/metrics.jsonl"), losses(sys.argv[1] + "/logs/resumed/metrics.jsonl")
steps = range(5, 9)
print("full", [a.get(s) for s in steps], "resumed", [b.get(s) for s in steps])
sys.exit(0 if all(s in a and s in b and abs(a[s] - b[s]) <= 1e-5 * max(1.0, abs(a[s])) for s in steps) else 1)
PY

# 4. Zero-shot with the CPU-trained weights: GPU and CPU agree.
printf 'a photo of a {} on a grey background\n' > "$work/templates.txt"
zs=(zeroshot --model-config "$work/fx/model.json" --weights "$work/logs/cpu/checkpoints/step_000012/model.safetensors"
    --data "$work/fx/eval" --templates "$work/templates.txt" --batch-size 16)
"$bin/coca-eval" "${zs[@]}" --device cpu --output "$work/zs_cpu.json" >"$work/zs_cpu.log" 2>&1
"$bin/coca-eval" "${zs[@]}" --device "$gpu" --precision fp32 --output "$work/zs_gpu.json" >"$work/zs_gpu.log" 2>&1
check "GPU zero-shot exits 0" test $? -eq 0
check "GPU zero-shot equals CPU zero-shot (within one image)" python3 - "$work/zs_cpu.json" "$work/zs_gpu.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print("cpu top1", a["top1"], "gpu top1", b["top1"], "images", a["images"])
sys.exit(0 if a["images"] == b["images"] and abs(a["top1"] - b["top1"]) <= 1.0 / a["images"] + 1e-12 else 1)
PY

# 5. Two GPUs (two ranks, NCCL buckets and all-gathers) track two CPU ranks step by step.
# Where there are two: real GPUs, or the emulation (params.json names "cuda-emu").
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
grep -q "cuda-emu" "$work/logs/gpu/params.json" 2>/dev/null && gpus=2
if [ "${gpus:-0}" -ge 2 ] && command -v mpirun >/dev/null 2>&1 && [ "$gpu" = cuda ]; then
  two=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 -x OMP_NUM_THREADS=1 "$train" "${common[@]}"
       --max-steps 4)
  "${two[@]}" --name two_cpu --device cpu >"$work/two_cpu.log" 2>&1
  check "two-rank CPU run exits 0" test $? -eq 0
  "${two[@]}" --name two_gpu --device cuda --precision fp32 >"$work/two_gpu.log" 2>&1
  check "two-GPU fp32 run exits 0" test $? -eq 0
  check "two-GPU losses track two CPU ranks (relative 1e-4, 4 steps)" python3 - "$work" <<'PY'
import json, sys
def losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, open(path)) if "loss" in r}
a, b = losses(sys.argv[1] + "/logs/two_cpu/metrics.jsonl"), losses(sys.argv[1] + "/logs/two_gpu/metrics.jsonl")
gap = max((abs(a[s] - b[s]) / max(1.0, abs(a[s])) for s in a if s in b), default=None)
print("two ranks: steps", len(a), len(b), "worst relative loss gap", gap)
sys.exit(0 if gap is not None and len(a) == len(b) >= 4 and gap <= 1e-4 else 1)
PY
else
  echo "SKIP two-GPU run: ${gpus:-0} GPU(s)"
fi

if [ $fail -ne 0 ]; then
  for f in "$work"/*.log; do echo "==== $f"; tail -5 "$f"; done
fi
exit $fail
