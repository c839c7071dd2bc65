#!/usr/bin/env bash
# coca-train end to end under mpirun (label mpi):
#   two ranks train and the loss goes down; stop + resume is bit-identical to an uninterrupted
#   run; SIGTERM saves and exits 0; a corrupt shard is one clear error; an injected non-finite
#   loss is skipped and counted; bad options exit non-zero with one line; --max-minutes plans a
#   schedule that ends with the time and resumes exactly.
# usage: test_train.sh BUILD_DIR
. "$(dirname "$0")/lib.sh" coca-train-test "$1"
common=(--model-config "$work/fx/model.json" --batch-size 8 --workers 1
        --logs "$work/logs" --warmup 2 --lr 2e-3 --log-every-n-steps 1 --save-frequency 0)

# 1. Two ranks, loss goes down (mean of the first 3 logged losses vs the last 3).
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name down --epochs 6 >"$work/down.log" 2>&1
rc=$?
check "two-rank training exits 0" test $rc -eq 0
check "loss goes down" python3 - "$work/logs/down/metrics.jsonl" <<'PY'
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
print("losses", [round(x, 3) for x in losses[:3]], "...", [round(x, 3) for x in losses[-3:]])
sys.exit(0 if len(losses) >= 6 and sum(losses[-3:]) < 0.8 * sum(losses[:3]) else 1)
PY

check "a CPU step copies nothing from a device and makes at most 3 host collectives" python3 - \
  "$work/logs/down/metrics.jsonl" <<'PY'
import json, sys
# (the first step also checks that the ranks gather equal row counts: one more collective)
rows = [r for r in map(json.loads, open(sys.argv[1])) if "d2h_copies_per_step" in r and r["step"] > 1]
d2h = sorted({r["d2h_copies_per_step"] for r in rows})
coll = sorted({r["host_collectives_per_step"] for r in rows})
print("after step 1: d2h per step", d2h, "host collectives per step", coll)
sys.exit(0 if rows and d2h == [0] and coll == [2, 3] else 1)
PY

# 1b. Zero-shot on the fixture's labelled set with the model just trained: the classes are
# colour+shape names the captions spell out, so a trained model must beat chance (1/8) by far;
# and two ranks must give exactly the single-process metrics.
printf 'a photo of a {} on a grey background\n' > "$work/templates.txt"
ckpt="$work/logs/down/checkpoints/$(cat "$work/logs/down/checkpoints/latest")"
zs=(zeroshot --model-config "$work/fx/model.json" --weights "$ckpt/model.safetensors" --data "$work/fx/eval"
    --templates "$work/templates.txt" --batch-size 16)
"$build/coca-eval" "${zs[@]}" --output "$work/zs1.json" >"$work/zs1.log" 2>&1
check "zero-shot (1 process) exits 0" test $? -eq 0
"${mpirun_[@]}" "$build/coca-eval" "${zs[@]}" --output "$work/zs2.json" >"$work/zs2.log" 2>&1
check "zero-shot (2 ranks) exits 0" test $? -eq 0
check "zero-shot accuracy far above chance on a learnable set" python3 - "$work/zs1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("zero-shot top1", r["top1"], "top5", r["top5"], "images", r["images"], "classes", r["classes"])
sys.exit(0 if r["images"] == 64 and r["classes"] == 8 and r["top1"] >= 0.5 and r["top5"] >= r["top1"] else 1)
PY
check "zero-shot metrics equal across rank counts" python3 - "$work/zs1.json" "$work/zs2.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["top1", "top5", "mean_per_class", "images", "confused", "per_class"]
sys.exit(0 if all(a[k] == b[k] for k in keys) else 1)
PY
# The same model with the class names rotated by one (label i named as class i+1): most answers
# are now wrong, so the per-class hits must differ from the per-class image counts.
python3 -c 'import json,sys; n=json.load(open(sys.argv[1]))["classnames"]; print("\n".join(n[1:]+n[:1]))' \
  "$work/fx/eval/index.json" > "$work/rotated_names.txt"
"$build/coca-eval" "${zs[@]}" --classnames "$work/rotated_names.txt" --output "$work/zs3.json" >"$work/zs3.log" 2>&1
check "zero-shot with rotated class names exits 0" test $? -eq 0
check "zero-shot per-class counts add up to top-1 and mean per class" python3 - "$work/zs1.json" "$work/zs3.json" <<'PY'
import json, sys
ok = True
for path in sys.argv[1:]:
    r = json.load(open(path))
    pc = r["per_class"]
    n = sum(c["images"] for c in pc)
    right = sum(c["top1"] for c in pc)
    mean = sum(c["top1"] / c["images"] for c in pc) / len(pc)
    print(path, "top1", r["top1"], "per_class", len(pc), "classes,", n, "images,", right, "right; mean", mean)
    ok = ok and len(pc) == 8 and n == r["images"] and right / n == r["top1"] and \
        abs(mean - r["mean_per_class"]) < 1e-12 and all(0 <= c["top1"] <= c["images"] for c in pc)
ok = ok and json.load(open(sys.argv[2]))["top1"] < 0.5  # the rotated names do lose
sys.exit(0 if ok else 1)
PY

# 2. Stop at step 4 and resume: bit-identical weights and the same losses as uninterrupted.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name full --max-steps 8 --save-every-n-steps 4 >"$work/full.log" 2>&1
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name resumed --max-steps 8 \
  --resume "$work/logs/full/checkpoints/step_000004" >"$work/resumed.log" 2>&1
check "resumed run exits 0" test $? -eq 0
check "resumed weights are bit-identical" cmp -s "$work/logs/full/checkpoints/step_000008/model.safetensors" \
  "$work/logs/resumed/checkpoints/step_000008/model.safetensors"
check "resumed optimizer state is bit-identical" cmp -s "$work/logs/full/checkpoints/step_000008/optimizer.safetensors" \
  "$work/logs/resumed/checkpoints/step_000008/optimizer.safetensors"
check "resumed losses equal uninterrupted ones" python3 - "$work/logs/full/metrics.jsonl" "$work/logs/resumed/metrics.jsonl" <<'PY'
import json, sys
a = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r}
b = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2])) if "loss" in r}
steps = [s for s in range(5, 9)]
print("full", [a.get(s) for s in steps], "resumed", [b.get(s) for s in steps])
sys.exit(0 if all(s in a and s in b and a[s] == b[s] for s in steps) else 1)
PY
check "resume latest finds the newest checkpoint" grep -q "step_000008" "$work/logs/full/checkpoints/latest"

# 2b. ZeRO-1 checkpoints: a --zero1 run stopped at step 4 resumes bit-identically, and its
# checkpoint (AdamW's layout) also resumes without --zero1 with the same losses.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name zfull --max-steps 8 --save-every-n-steps 4 --zero1 >"$work/zfull.log" 2>&1
check "zero1 run with checkpoints exits 0" test $? -eq 0
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name zresumed --max-steps 8 --zero1 \
  --resume "$work/logs/zfull/checkpoints/step_000004" >"$work/zresumed.log" 2>&1
check "zero1 resume exits 0" test $? -eq 0
check "zero1 resumed weights are bit-identical" cmp -s "$work/logs/zfull/checkpoints/step_000008/model.safetensors" \
  "$work/logs/zresumed/checkpoints/step_000008/model.safetensors"
check "zero1 resumed optimizer state is bit-identical" cmp -s "$work/logs/zfull/checkpoints/step_000008/optimizer.safetensors" \
  "$work/logs/zresumed/checkpoints/step_000008/optimizer.safetensors"
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name zplain --max-steps 8 \
  --resume "$work/logs/zfull/checkpoints/step_000004" >"$work/zplain.log" 2>&1
check "a zero1 checkpoint resumes without --zero1" test $? -eq 0
check "zero1 and plain AdamW resumed losses agree" python3 - "$work/logs/zfull/metrics.jsonl" "$work/logs/zplain/metrics.jsonl" "$work/logs/full/metrics.jsonl" <<'PY'
import json, sys
a, b, c = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:4])
steps = range(1, 9)
print("zero1", [round(a.get(s, 0), 6) for s in steps], "plain resumed", [round(b.get(s, 0), 6) for s in range(5, 9)])
ok = all(s in a and s in c and abs(a[s] - c[s]) <= 1e-5 * abs(c[s]) for s in steps)  # zero1 == plain AdamW
ok = ok and all(s in b and abs(a[s] - b[s]) <= 1e-5 * abs(a[s]) for s in range(5, 9))
sys.exit(0 if ok else 1)
PY

# 3. SIGTERM (as Slurm sends it to every task): finish the step, save, exit 0.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name term --epochs 1000 >"$work/term.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do grep -q "^step 2/" "$work/term.log" 2>/dev/null && break; sleep 0.5; done
pkill -TERM -P $pid || true  # the ranks, as Slurm signals every task
wait $pid
rc=$?
check "SIGTERM exits 0" test $rc -eq 0
check "SIGTERM saved a checkpoint" test -s "$work/logs/term/checkpoints/latest"
check "SIGTERM says how to resume" grep -q "resume with --resume latest" "$work/term.log"

# 4. A corrupt shard: one clear error naming the file, non-zero exit.
cp -r "$work/fx/train" "$work/bad"
truncate -s 3000 "$work/bad/shard-00001.h5"
"${mpirun_[@]}" "$train" --train-data "$work/bad" "${common[@]}" --name bad --epochs 1 >"$work/bad.log" 2>&1
rc=$?
check "corrupt shard exits non-zero" test $rc -ne 0
check "corrupt shard error names the file" grep -q "shard-00001.h5" "$work/bad.log"

# 5. An injected non-finite loss is skipped and counted; training completes.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name nan --max-steps 5 --debug-nonfinite-step 2 >"$work/nan.log" 2>&1
rc=$?
check "non-finite step: run completes" test $rc -eq 0
check "non-finite step is reported" grep -q "non-finite" "$work/nan.log"
check "non-finite step is counted" grep -q "1 non-finite steps skipped" "$work/nan.log"
# Numbered as the loss records are: --debug-nonfinite-step 2 is the third step, the one step of
# 1..5 with no loss record (logged every step), and the skip record names that step.
check "non-finite record names the step that has no loss record" python3 - "$work/logs/nan/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
skips = [r["step"] for r in recs if "nonfinite_skipped" in r]
lossless = sorted(set(range(1, 6)) - {r["step"] for r in recs if "loss" in r})
print("nonfinite_skipped at", skips, "steps without a loss record", lossless)
sys.exit(0 if skips == [3] and lossless == [3] else 1)
PY

# 5b. --accum-freq has OpenCLIP's meaning: 2 micro-batches of 4 on each of 2 ranks train the
# objective of one batch of 8 (the contrastive negatives span all 16 samples), and the logged
# loss is 1 x contrastive + 2 x caption at every accumulation.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name big --max-steps 2 >"$work/big.log" 2>&1
check "batch 8: exits 0" test $? -eq 0
half=("${common[@]}")
half[3]=4  # --batch-size 4
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${half[@]}" --name accum --max-steps 2 --accum-freq 2 \
  >"$work/accum.log" 2>&1
check "batch 4 x --accum-freq 2: exits 0" test $? -eq 0
check "accumulated first step: the losses of one batch of 8; loss = contrastive + 2 caption" python3 - \
  "$work/logs/big/metrics.jsonl" "$work/logs/accum/metrics.jsonl" <<'PY'
import json, sys
big, acc = ([r for r in map(json.loads, open(p)) if "loss" in r] for p in sys.argv[1:3])
rel = lambda a, b: abs(a - b) / abs(b)
print("step 1 contrastive", big[0]["contrastive_loss"], acc[0]["contrastive_loss"],
      "caption", big[0]["caption_loss"], acc[0]["caption_loss"])
ok = rel(acc[0]["contrastive_loss"], big[0]["contrastive_loss"]) < 1e-4 and \
     rel(acc[0]["caption_loss"], big[0]["caption_loss"]) < 1e-4
ok = ok and all(rel(r["loss"], r["contrastive_loss"] + 2 * r["caption_loss"]) < 1e-5 for r in big + acc)
sys.exit(0 if ok else 1)
PY

# 7. --max-minutes plans the schedule: after the warmup the step count that fits is set (here
# from a stated step time, --debug-step-seconds, 0.2 s: ten times the real one or more, so the clock never
# cuts the run), the run ends at that step with the cosine at its floor (last lr under 1% of
# the peak), and a resume from a checkpoint in the middle ends bit-identically.
timed=(--train-data "$work/fx/train" "${common[@]}" --epochs 500 --max-minutes 0.2 --debug-step-seconds 0.2
       --save-every-n-steps 10 --keep-checkpoints 100)
"${mpirun_[@]}" "$train" "${timed[@]}" --name timed >"$work/timed.log" 2>&1
check "time-planned run exits 0" test $? -eq 0
check "time-planned run logs its plan and ends on it" python3 - "$work/logs/timed/metrics.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
plan = [r["time_planned_total_steps"] for r in recs if "time_planned_total_steps" in r]
steps = [r for r in recs if "lr" in r]
last = steps[-1]
print("planned", plan, "last step", last["step"], "last lr", last["lr"])
sys.exit(0 if len(plan) == 1 and last["step"] == plan[0] and plan[0] > 20 and last["lr"] < 0.01 * 2e-3 else 1)
PY
check "time-planned run stopped by its plan, not by the clock" grep -q "(end of training)" "$work/timed.log"
tlast=$(cat "$work/logs/timed/checkpoints/latest")
"${mpirun_[@]}" "$train" "${timed[@]}" --name timed2 --resume "$work/logs/timed/checkpoints/step_000010" >"$work/timed2.log" 2>&1
check "resumed time-planned run exits 0" test $? -eq 0
check "resumed time-planned run ends bit-identically ($tlast)" cmp -s "$work/logs/timed/checkpoints/$tlast/model.safetensors" \
  "$work/logs/timed2/checkpoints/$tlast/model.safetensors"

# 8. --train-num-samples sets the epoch length (2 ranks x 8: 128 samples are 8 steps, not 16).
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --name short --epochs 2 --train-num-samples 128 \
  >"$work/short.log" 2>&1
check "--train-num-samples 128 plans 8 steps an epoch" grep -q "16 steps over 2 epochs (epoch 0 ends at step 8)" "$work/short.log"

# 6. Bad options: one line, non-zero, before any work.
for args in "--batch-size 0" "--lr-scheduler wiggly" "--no-such-option 1" "--model no_such_model" "--device gpu" \
            "--precision fp16" "--device cpu --precision amp_bf16" "--aug-scale 0.5" "--aug-scale 0.9,1.5"; do
  out=$("$train" --train-data "$work/fx/train" --logs "$work/logs" $args 2>&1)
  rc=$?
  check "bad option '$args' exits non-zero with one line" test $rc -ne 0 -a "$(printf '%s\n' "$out" | wc -l)" -eq 1
done
# --device cuda with no GPU visible (CPU-only build, or CUDA_VISIBLE_DEVICES hiding every GPU).
out=$(CUDA_VISIBLE_DEVICES= "$train" --train-data "$work/fx/train" "${common[@]}" --name nogpu --max-steps 1 --device cuda 2>&1)
rc=$?
echo "$out"
check "--device cuda without a GPU exits non-zero with one line naming it" \
  test $rc -ne 0 -a "$(printf '%s\n' "$out" | wc -l)" -eq 1 -a -n "$(printf '%s' "$out" | grep -e '--device cuda')"
check "the run records its device and precision" python3 - "$work/logs/down/params.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
print("device", p.get("device"), "precision", p.get("precision"))
sys.exit(0 if p.get("device") == "cpu" and p.get("precision") == "fp32" else 1)
PY
out=$("$train" --train-data "$work/nonexistent" 2>&1)
check "missing dataset is one line" test $? -ne 0 -a "$(printf '%s\n' "$out" | wc -l)" -eq 1

if [ $fail -ne 0 ]; then
  for f in "$work"/*.log; do echo "==== $f"; tail -5 "$f"; done
fi
exit $fail
