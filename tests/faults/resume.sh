#!/usr/bin/env bash
# --resume with a retyped command line (label faults): a checkpoint records the data it read (a
# sha256 of index.json, which lists every shard) and what orders it (--seed, --accum-freq,
# --dataset-resampled, --train-num-samples, the tokens). A resume that differs in any of them
# would repeat or skip samples, so it is refused before any step with one stderr line naming
# each field and both values; --resume-new-data continues from the checkpoint's weights,
# optimizer and step with the epoch started afresh. (World and batch size may change: that is
# the elastic path, tested in kills.sh and tests/train.)
# usage: resume.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
make_fixture
logs="$work/logs"
common=(--model-config "$fx/model.json" --batch-size 4 --workers 1 --warmup 2 --log-every-n-steps 1
        --save-frequency 0 --epochs 3 --logs "$logs" --lr-scheduler const)
run="$tag-base"
ck="$logs/$run/checkpoints"

section "a checkpoint at step 2"
run_timed "2 steps, seed 0" "$work/base.log" \
  "$train" --train-data "$fx/train" "${common[@]}" --name "$run" --max-steps 2 --save-every-n-steps 2
check "the first run exits 0 with step_000002" test $rc -eq 0 -a -d "$ck/step_000002"
check "state.json records the data's fingerprint" \
  grep -q '"train_data_sha256"' "$ck/step_000002/state.json"

# The same shards in another order: index.json differs, so does the epoch's plan.
cp -r "$fx/train" "$work/reordered"
python3 - "$work/reordered/index.json" <<'PY'
import json, sys
p = sys.argv[1]
j = json.load(open(p))
j["shards"] = j["shards"][::-1]
json.dump(j, open(p, "w"), indent=2)
PY

section "each changed field is refused, before any step"
# refused LABEL NAMES ARGS...: a resume of step 2, in a run directory of its own, is refused
refused() {
  local label=$1 names=$2; shift 2
  local name="$tag-r$((++n))"
  one_line_error "$label" "$names" "" \
    "$train" "${common[@]}" --name "$name" --resume "$ck/step_000002" --max-steps 4 "$@"
  check "$label: no step was taken" test ! -e "$logs/$name/checkpoints/step_000003" -a \
    "$(cat "$logs/$name/metrics.jsonl" 2>/dev/null | grep -c '"loss"')" -eq 0
}
n=0
refused "--seed 1" "--seed 0 in the checkpoint, 1 now" --train-data "$fx/train" --seed 1
refused "other --train-data" "--train-data (sha256 of index.json)" --train-data "$work/reordered"
refused "--accum-freq 2" "--accum-freq 1 in the checkpoint, 2 now" --train-data "$fx/train" --accum-freq 2
refused "--dataset-resampled" "--dataset-resampled false in the checkpoint, true now" \
  --train-data "$fx/train" --dataset-resampled
refused "--train-num-samples 24" "--train-num-samples 0 in the checkpoint, 24 now" \
  --train-data "$fx/train" --train-num-samples 24
one_line_error "two fields at once" "--seed 0 in the checkpoint, 7 now; --accum-freq 1 in the checkpoint, 2 now" "" \
  "$train" "${common[@]}" --name "$tag-two" --resume "$ck/step_000002" --max-steps 4 --train-data "$fx/train" \
  --seed 7 --accum-freq 2
check "the refusal says how to go on" grep -q -- "--resume-new-data" "$work/err.txt"

section "--resume-new-data trains on"
run_timed "--seed 1 --resume-new-data" "$work/new1.log" \
  "$train" --train-data "$fx/train" "${common[@]}" --name "$tag-new1" --resume "$ck/step_000002" --max-steps 4 \
  --save-every-n-steps 2 --seed 1 --resume-new-data
check "--resume-new-data with --seed 1 exits 0 at step 4" \
  test $rc -eq 0 -a -d "$logs/$tag-new1/checkpoints/step_000004"
check "it names what differs and starts the epoch afresh" \
  grep -q -- "--resume-new-data: --seed 0 in the checkpoint, 1 now" "$work/new1.log"
check "it starts from the checkpoint's step" grep -q "^resumed from .*step_000002 at step 2" "$work/new1.log"
run_timed "reordered data --resume-new-data" "$work/new2.log" \
  "$train" --train-data "$work/reordered" "${common[@]}" --name "$tag-new2" --resume "$ck/step_000002" \
  --max-steps 4 --resume-new-data
check "--resume-new-data with other data exits 0" test $rc -eq 0
# A resume of the new run without the flag checks against the new data, and passes.
run_timed "resume the new run, no flag" "$work/new3.log" \
  "$train" --train-data "$fx/train" "${common[@]}" --name "$tag-new1" --resume latest --max-steps 5 --seed 1
check "the resumed run's own checkpoint records its new seed (exit $rc)" test $rc -eq 0

section "an unchanged resume is bit-identical to an uninterrupted run"
run_timed "uninterrupted, 4 steps" "$work/whole.log" \
  "$train" --train-data "$fx/train" "${common[@]}" --name "$tag-whole" --max-steps 4 --save-every-n-steps 4
run_timed "resume step 2 to 4" "$work/cont.log" \
  "$train" --train-data "$fx/train" "${common[@]}" --name "$run" --resume latest --max-steps 4 \
  --save-every-n-steps 4
check "unchanged resume exits 0" test $rc -eq 0
check "unchanged resume: step 4 equals the uninterrupted run's" \
  cmp -s "$ck/step_000004/model.safetensors" "$logs/$tag-whole/checkpoints/step_000004/model.safetensors"
finish
