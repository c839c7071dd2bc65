#!/usr/bin/env bash
# Uneven shards (label faults): 6 shards of 100 samples and one of 50, so every epoch hands the
# two ranks a different number of samples and epochs differ in length.
#   1. For several seeds, 4 epochs on 2 ranks exit 0 and end exactly at the step the startup
#      line announced (the plan and the loader agree).
#   2. Resume through the epoch ends: a run stopped partway (by --max-steps) and continued with
#      --resume latest ends bit-identical to an uninterrupted run; so does a cosine run resumed
#      from a mid-epoch checkpoint.
#   3. Elastic resume: a 2-rank mid-epoch checkpoint resumes on 1 and on 3 ranks and finishes
#      the planned epochs.
# usage: epochs.sh BUILD_DIR   (COCA_FAULTS_LONG=1: 16 seeds instead of 4)
source "$(dirname "$0")/lib.sh"
make_fixture --uneven 100,100,100,100,100,100,50
logs="$work/logs"
unbatched=(--train-data "$fx/uneven" --model-config "$fx/model.json" --workers 1 --warmup 2
           --log-every-n-steps 5 --logs "$logs")
common=("${unbatched[@]}" --batch-size 16)
seeds=4
[ "$long" = 1 ] && seeds=16

# Epoch of a checkpoint whose loader stands inside that epoch (batch > 0); -1 at an epoch end.
mid_epoch() { python3 -c 'import json,sys
st = json.load(open(sys.argv[1] + "/state.json"))
ld = st["ranks"][0]["loader"]
print(st["epoch"] if ld["batch"] > 0 and ld["epoch"] == st["epoch"] else -1)' "$1"; }
state_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1] + "/state.json"))[sys.argv[2]])' "$1" "$2"; }
final_ckpt() { echo "$logs/$1/checkpoints/$(latest_name "$logs/$1")"; }

# ---- 1. every seed ends where it said it would -------------------------------------------------
section "uneven shards: 4 epochs on 2 ranks, seeds 0..$((seeds - 1))"
for ((s = 0; s < seeds; s++)); do
  name="$tag-seed$s"
  extra=()
  # Seed 0 also keeps a checkpoint every 7 steps, for the resume cases below.
  [ $s -eq 0 ] && extra=(--save-every-n-steps 7 --keep-checkpoints 100)
  exits_within 300 "seed $s" "$work/seed$s.log" \
    mpi 2 "$train" "${common[@]}" --epochs 4 --seed $s --save-frequency 1 --name "$name" "${extra[@]}"
  check_ran_to_end "seed $s" "$work/seed$s.log" "$logs/$name/metrics.jsonl"
  check "seed $s: the final checkpoint is step $announced of epoch 4" \
    test "$(latest_step "$logs/$name")" = "${announced:--2}" -a "$(state_field "$(final_ckpt "$name")" epoch 2>/dev/null)" = 4
  [ $rc -ne 0 ] || [ "$last" != "$announced" ] && show_log "$work/seed$s.log"
done
ref0=$(final_ckpt "$tag-seed0")
total0=$(announced_steps "$work/seed0.log")

# ---- 2. resume through the epoch ends ------------------------------------------------------------
# --max-steps also ends the learning-rate schedule (the plan's total_steps), so a cosine run cut by
# --max-steps and resumed without it follows another schedule than an uninterrupted one. With
# --lr-scheduler const the comparison isolates what resuming must preserve: weights, optimizer
# state, the data position and the uneven epoch ends.
section "stopped by --max-steps, resumed with --resume latest: bit-identical to uninterrupted"
const=(--epochs 4 --seed 1 --save-frequency 1 --lr-scheduler const --save-every-n-steps 7)
run_timed "uninterrupted (const lr)" "$work/const_full.log" mpi 2 "$train" "${common[@]}" "${const[@]}" --name "$tag-cfull"
check "uninterrupted const-lr run exits 0" test $rc -eq 0
run_timed "first part, --max-steps 25" "$work/const_a.log" \
  mpi 2 "$train" "${common[@]}" "${const[@]}" --name "$tag-cpart" --max-steps 25
check "run stopped by --max-steps 25 exits 0 with a checkpoint at step 25" \
  test $rc -eq 0 -a "$(latest_step "$logs/$tag-cpart")" = 25
exits_within 300 "resume latest, no --max-steps" "$work/const_b.log" \
  mpi 2 "$train" "${common[@]}" "${const[@]}" --name "$tag-cpart" --resume latest
check "resume without --max-steps exits 0" test $rc -eq 0
check "resumed run ends at the uninterrupted run's step" \
  test "$(latest_step "$logs/$tag-cpart")" = "$(latest_step "$logs/$tag-cfull")" -a "$(latest_step "$logs/$tag-cfull")" -gt 25
check "resumed weights are bit-identical to the uninterrupted run's" \
  cmp -s "$(final_ckpt "$tag-cfull")/model.safetensors" "$(final_ckpt "$tag-cpart")/model.safetensors"
check "resumed optimizer state is bit-identical too" \
  cmp -s "$(final_ckpt "$tag-cfull")/optimizer.safetensors" "$(final_ckpt "$tag-cpart")/optimizer.safetensors"

# A cosine run: seed 0's own mid-epoch checkpoint (epoch >= 1), published as `latest` of a new
# run directory, continued with --resume latest.
section "cosine run resumed from a mid-epoch checkpoint: bit-identical to uninterrupted"
mid=""
for d in "$logs/$tag-seed0"/checkpoints/step_*; do
  e=$(mid_epoch "$d" 2>/dev/null)
  if [ -n "$e" ] && [ "$e" -ge 1 ]; then mid=$d; break; fi
done
if [ -z "$mid" ]; then
  check "seed 0 left a mid-epoch checkpoint in epoch >= 1" false
else
  mid_step=$(state_field "$mid" step)
  echo "   mid-epoch checkpoint: $(basename "$mid") (epoch $(state_field "$mid" epoch))"
  mkdir -p "$logs/$tag-rt/checkpoints"
  cp -r "$mid" "$logs/$tag-rt/checkpoints/"
  basename "$mid" >"$logs/$tag-rt/checkpoints/latest"
  exits_within 300 "resume latest from $(basename "$mid")" "$work/rt.log" \
    mpi 2 "$train" "${common[@]}" --epochs 4 --seed 0 --save-frequency 1 --name "$tag-rt" --resume latest
  check "cosine resume exits 0" test $rc -eq 0
  check "cosine resume ends at step $total0" test "$(latest_step "$logs/$tag-rt")" = "$total0"
  check "cosine resume is bit-identical to the uninterrupted seed-0 run" \
    cmp -s "$ref0/model.safetensors" "$(final_ckpt "$tag-rt")/model.safetensors"
fi

# ---- 3. elastic resume ---------------------------------------------------------------------------
section "elastic: a 2-rank mid-epoch checkpoint resumed on 1 and on 3 ranks"
if [ -z "$mid" ]; then
  skip "elastic resume: no mid-epoch checkpoint"
else
  # 1 rank x 32 keeps the global batch of 32 (and half the steps); 3 ranks x 16 grow it.
  for np in 1 3; do
    name="$tag-elastic$np"
    bs=16
    [ $np -eq 1 ] && bs=32
    exits_within 300 "resume on $np rank(s) x $bs" "$work/elastic$np.log" \
      mpi $np "$train" "${unbatched[@]}" --batch-size $bs --epochs 4 --seed 0 --save-frequency 1 --name "$name" \
      --resume "$mid"
    announced=$(announced_steps "$work/elastic$np.log")
    check "$np rank(s): exits 0" test $rc -eq 0
    check "$np rank(s): says it resumes a checkpoint of 2 rank(s)" grep -q "resuming a checkpoint of 2 rank(s)" "$work/elastic$np.log"
    check "$np rank(s): continues from step $mid_step and ends at the announced step ${announced:-none}" \
      test -n "$announced" -a "$(last_metrics_step "$logs/$name/metrics.jsonl")" = "${announced:-x}" \
           -a "${announced:-0}" -gt "$mid_step"
    check "$np rank(s): finishes the 4 planned epochs" test "$(state_field "$(final_ckpt "$name")" epoch 2>/dev/null)" = 4
    [ $rc -ne 0 ] && show_log "$work/elastic$np.log"
  done
fi
finish
