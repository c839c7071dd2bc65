#!/usr/bin/env bash
# coca-train's fine-tuning flags end to end under mpirun (label mpi), two ranks:
#   --lock-image/--lock-text keep the frozen weights bit for bit while the unlocked groups and
#   the decoder change, leave the frozen parameters out of the optimizer state, and resume
#   (with and without --zero1); --grad-checkpointing gives bit-identical weights and a lower
#   host-memory peak; --force-patch-dropout changes training and resumes exactly;
#   --image-mean changes training and is saved in the model config; --aug-cfg refuses an
#   unknown key naming it; --aug-cfg colour jitter changes training, is recorded in
#   params.json and resumes exactly.
# usage: test_finetune.sh BUILD_DIR
. "$(dirname "$0")/lib.sh" coca-finetune-test "$1"
# Two layers per tower, so that the group boundaries have something to cut.
python3 - "$work/fx/model.json" "$work/model2.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for k in ("vision_cfg", "text_cfg", "multimodal_cfg"):
    c[k]["layers"] = 2
json.dump(c, open(sys.argv[2], "w"))
PY
common=(--train-data "$work/fx/train" --model-config "$work/model2.json" --batch-size 8 --workers 1
        --logs "$work/logs" --warmup 1 --log-every-n-steps 1 --save-frequency 0 --seed 7)
run() {  # run <name> <args...>: two ranks, output in $work/<name>.log
  local name=$1; shift
  "${mpirun_[@]}" "$train" "${common[@]}" --lr "${LR:-2e-3}" --name "$name" "$@" >"$work/$name.log" 2>&1
}
ck() { echo "$work/logs/$1/checkpoints/$2"; }

# Safetensors comparisons by tensor name (header: 8-byte length, JSON, then the data).
cat >"$work/st.py" <<'PY'
import json, re, struct, sys
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); head.pop("__metadata__", None)
    return {k: raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in head.items()}
mode = sys.argv[1]
if mode == "frozen":  # frozen.py init trained REGEX_TRAINABLE: frozen equal, trainable changed
    a, b, trainable = load(sys.argv[2]), load(sys.argv[3]), re.compile(sys.argv[4])
    assert a.keys() == b.keys(), "weights files hold different tensors"
    bad = [k for k in a if (a[k] == b[k]) == bool(trainable.match(k))]
    assert not bad, "wrong frozen/changed state: " + ", ".join(sorted(bad)[:8])
elif mode == "optim":  # optim.py optimizer.safetensors weights REGEX_TRAINABLE
    o, w, trainable = load(sys.argv[2]), load(sys.argv[3]), re.compile(sys.argv[4])
    want = {k + s for k in w if trainable.match(k) for s in (".exp_avg", ".exp_avg_sq")} | {"step"}
    assert set(o) == want, "optimizer state: extra %s missing %s" % (sorted(set(o) - want)[:4], sorted(want - set(o))[:4])
elif mode == "differ":
    a, b = load(sys.argv[2]), load(sys.argv[3])
    assert any(a[k] != b[k] for k in a), "identical weights"
PY
st() { python3 "$work/st.py" "$@"; }
# Trainable under --lock-image --lock-image-unlocked-groups 2 --lock-text --lock-text-unlocked-layers 2.
trainable='^(logit_scale|text_decoder\..*|visual\.proj|visual\.ln_post\..*|visual\.transformer\.resblocks\.1\..*|text\.text_projection|text\.ln_final\..*|text\.transformer\.resblocks\.1\..*)$'
locks=(--lock-image --lock-image-unlocked-groups 2 --lock-text --lock-text-unlocked-layers 2)

# 1. The initial weights (lr 0 leaves them as initialised), then a locked run.
LR=0 run init --max-steps 1
check "lr-0 run exits 0" test $? -eq 0
run locked "${locks[@]}" --max-steps 3
check "locked run exits 0" test $? -eq 0
check "locked run logs trainable and frozen counts" grep -q "parameters trainable, .* frozen" "$work/locked.log"
check "frozen weights bit-identical, unlocked groups and decoder changed" \
  st frozen "$(ck init step_000001)/model.safetensors" "$(ck locked step_000003)/model.safetensors" "$trainable"
check "optimizer state holds exactly the trainable parameters" \
  st optim "$(ck locked step_000003)/optimizer.safetensors" "$(ck locked step_000003)/model.safetensors" "$trainable"

# 2. Resume the locked run, plain and with --zero1 (sharded state of the trainable only).
run locked "${locks[@]}" --max-steps 5 --resume latest
check "locked run resumes" test $? -eq 0
check "frozen weights still bit-identical after resume" \
  st frozen "$(ck init step_000001)/model.safetensors" "$(ck locked step_000005)/model.safetensors" "$trainable"
run lockedz "${locks[@]}" --max-steps 3 --zero1
check "locked --zero1 run exits 0" test $? -eq 0
check "locked --zero1: frozen weights bit-identical" \
  st frozen "$(ck init step_000001)/model.safetensors" "$(ck lockedz step_000003)/model.safetensors" "$trainable"
check "locked --zero1: optimizer state holds exactly the trainable parameters" \
  st optim "$(ck lockedz step_000003)/optimizer.safetensors" "$(ck lockedz step_000003)/model.safetensors" "$trainable"

# 3. Grad checkpointing: the same weights bit for bit, a lower host-memory peak.
run plain --max-steps 3
run gc --max-steps 3 --grad-checkpointing
check "--grad-checkpointing run exits 0" test $? -eq 0
check "--grad-checkpointing weights bit-identical to the plain run" \
  cmp -s "$(ck plain step_000003)/model.safetensors" "$(ck gc step_000003)/model.safetensors"
check "--grad-checkpointing lowers the host tensor peak" python3 - "$work/logs/plain/metrics.jsonl" "$work/logs/gc/metrics.jsonl" <<'PY'
import json, sys
def peak(p):
    return max(r["host_tensor_peak_mib"] for r in map(json.loads, open(p)) if "host_tensor_peak_mib" in r)
a, b = peak(sys.argv[1]), peak(sys.argv[2])
print("host tensor peak: plain %.2f MiB, checkpointed %.2f MiB" % (a, b))
sys.exit(0 if b < a else 1)
PY

# 4. Patch dropout: changes training; a stopped and resumed run draws the same patches.
run pd --max-steps 4 --force-patch-dropout 0.5 --save-every-n-steps 2
check "--force-patch-dropout run exits 0" test $? -eq 0
run pd3 --max-steps 3 --force-patch-dropout 0.5
check "--force-patch-dropout changes training" \
  st differ "$(ck plain step_000003)/model.safetensors" "$(ck pd3 step_000003)/model.safetensors"
mkdir -p "$work/logs/pdr/checkpoints"
cp -r "$(ck pd step_000002)" "$work/pdr_from"
run pdr --max-steps 4 --force-patch-dropout 0.5 --resume "$work/pdr_from"
check "patch dropout resumed weights bit-identical" \
  cmp -s "$(ck pd step_000004)/model.safetensors" "$(ck pdr step_000004)/model.safetensors"

# 5. --image-mean/--image-std: the loader uses them, the saved config carries them.
run mean --max-steps 3 --image-mean 0.3,0.3,0.3 --image-std 0.3 0.3 0.3
check "--image-mean run exits 0" test $? -eq 0
check "--image-mean changes training" \
  st differ "$(ck plain step_000003)/model.safetensors" "$(ck mean step_000003)/model.safetensors"
check "the checkpoint's model_config carries the mean/std" python3 - "$(ck mean step_000003)/state.json" <<'PY'
import json, sys
pp = json.load(open(sys.argv[1]))["model_config"]["preprocess_cfg"]
sys.exit(0 if pp == {"mean": [0.3] * 3, "std": [0.3] * 3} else 1)
PY

# 6. --aug-cfg with a key we do not implement: one line naming it, non-zero exit.
"$train" "${common[@]}" --name bad --aug-cfg scale='(0.5,1.0)' re_prob=0.25 >"$work/bad.log" 2>&1
rc=$?
check "--aug-cfg re_prob refused" test $rc -ne 0
check "--aug-cfg error names the key" grep -q "'re_prob'" "$work/bad.log"

# 7. Colour jitter and grayscale (--aug-cfg): change training, are recorded in params.json,
#    and a stopped and resumed run jitters the same samples the same way.
cj=(--aug-cfg "color_jitter=(0.4,0.4,0.4,0.1)" color_jitter_prob=0.8 gray_scale_prob=0.2)
run cj --max-steps 3 --save-every-n-steps 2 "${cj[@]}"  # the plain run's schedule
check "colour jitter run exits 0" test $? -eq 0
check "colour jitter changes training" \
  st differ "$(ck plain step_000003)/model.safetensors" "$(ck cj step_000003)/model.safetensors"
check "params.json records the colour settings" python3 - "$work/logs/cj/params.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["options"]
sys.exit(0 if (o["color_jitter"], o["color_jitter_prob"], o["gray_scale_prob"]) == ([0.4, 0.4, 0.4, 0.1], 0.8, 0.2) else 1)
PY
mkdir -p "$work/logs/cjr/checkpoints"
cp -r "$(ck cj step_000002)" "$work/cjr_from"
run cjr --max-steps 3 "${cj[@]}" --resume "$work/cjr_from"
check "colour jitter resumed weights bit-identical" \
  cmp -s "$(ck cj step_000003)/model.safetensors" "$(ck cjr step_000003)/model.safetensors"

if [ $fail -ne 0 ]; then
  for f in "$work"/*.log; do echo "== $f"; tail -5 "$f"; done
fi
exit $fail
