#!/usr/bin/env bash
# Checkpoint directory trouble (label faults).
#   a. Rolled-back resume with --keep-checkpoints 1: resuming step 4 of a run that reached step 8,
#      in the same run directory, must publish its own steps and never delete the other
#      timeline's newer checkpoint; `latest` always names a directory that exists.
#   b. Disk full (a tmpfs just big enough for one checkpoint; needs root, else SKIP): the failed
#      save is one error line naming the checkpoint and the cause, the run stops non-zero,
#      `latest` still names a complete checkpoint and no partial directory is left; with
#      --continue-on-save-error training goes on to the end with one warning per failed save.
# usage: checkpoints.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
make_fixture
logs="$work/logs"
common=(--train-data "$fx/train" --model-config "$fx/model.json" --batch-size 8 --workers 1 --warmup 2
        --log-every-n-steps 1 --save-frequency 0 --epochs 1000)

# ---- a. rolled-back resume -----------------------------------------------------------------------
section "a. rolled-back resume with --keep-checkpoints 1"
run="$tag-roll"
ck="$logs/$run/checkpoints"
run_timed "to step 8, saving every 2" "$work/roll1.log" \
  mpi 2 "$train" "${common[@]}" --logs "$logs" --name "$run" --max-steps 8 --save-every-n-steps 2
check "first timeline exits 0 with step_000004 and step_000008" \
  test $rc -eq 0 -a -d "$ck/step_000004" -a -d "$ck/step_000008"
run_timed "resume step 4 to step 6, keep 1" "$work/roll2.log" \
  mpi 2 "$train" "${common[@]}" --logs "$logs" --name "$run" --resume "$ck/step_000004" --max-steps 6 \
  --save-every-n-steps 2 --keep-checkpoints 1
check "rolled-back resume exits 0" test $rc -eq 0
check "latest names step_000006 (got '$(latest_name "$logs/$run")')" test "$(latest_name "$logs/$run")" = step_000006
check "latest names a complete checkpoint" latest_is_complete "$logs/$run"
check "step_000008 of the other timeline is not deleted" complete_checkpoint "$ck/step_000008"
run_timed "--resume latest to step 7" "$work/roll3.log" \
  mpi 2 "$train" "${common[@]}" --logs "$logs" --name "$run" --resume latest --max-steps 7 --keep-checkpoints 1
check "--resume latest continues from step 6 to step 7" \
  test $rc -eq 0 -a "$(grep -c "^resumed from .*step_000006" "$work/roll3.log")" -eq 1 -a "$(latest_step "$logs/$run")" = 7
check "step_000008 is still not deleted" complete_checkpoint "$ck/step_000008"
[ $failed -gt 0 ] && ls "$ck" | sed 's/^/   | /'

# ---- b. disk full --------------------------------------------------------------------------------
section "b. disk full while saving"
# The size of one checkpoint of the micro model, measured.
run_timed "one checkpoint, to measure it" "$work/measure.log" \
  "$train" "${common[@]}" --logs "$logs" --name "$tag-measure" --max-steps 1 --save-every-n-steps 1
ckpt_kb=$(du -sk "$logs/$tag-measure/checkpoints/step_000001" 2>/dev/null | cut -f1)
disk="$work/disk"
mkdir -p "$disk"
size_kb=$(( ${ckpt_kb:-0} * 3 / 2 + 64 ))  # one checkpoint and a half: the second save cannot fit
if [ -z "$ckpt_kb" ] || [ "$rc" -ne 0 ]; then
  check "a one-step run saves a checkpoint to measure" false
elif ! mount -t tmpfs -o size=${size_kb}k tmpfs "$disk" 2>/dev/null; then
  skip "full disk: cannot mount tmpfs"
else
  mounts+=("$disk")
  echo "   checkpoint ${ckpt_kb} KB; --logs on a ${size_kb} KB tmpfs"
  run="$tag-full"
  exits_within 60 "disk full" "$work/full.log" \
    mpi 2 "$train" "${common[@]}" --logs "$disk" --name "$run" --max-steps 6 --save-every-n-steps 1 --keep-checkpoints 3
  failed_ckpt=$(sed -n 's/^coca-train: checkpoint \(step_[0-9]*\) failed.*/\1/p' "$work/full.log" | head -1)
  failed_step=-1
  [[ $failed_ckpt =~ ^step_0*([0-9]+)$ ]] && failed_step=${BASH_REMATCH[1]}
  check "disk full: exits non-zero" test $rc -ne 0
  check "disk full: one error line naming the checkpoint and the cause" \
    test "$(grep -E "checkpoint ${failed_ckpt:-step_} failed" "$work/full.log" | grep -cE "No space left|disk full")" -eq 1
  grep -E "checkpoint .* failed" "$work/full.log" | head -2 | cut -c1-300 | sed 's/^/   | /'
  check "disk full: it was the second or third save (${failed_ckpt:-none})" \
    grep -qE '^step_00000[23]$' <<<"${failed_ckpt:-none}"
  check "disk full: latest names a complete checkpoint" latest_is_complete "$disk/$run"
  check "disk full: no partial checkpoint directory left" no_leftovers "$disk/$run"
  check "disk full: training stopped at the failed save" \
    test "$(last_metrics_step "$disk/$run/metrics.jsonl")" = "$failed_step"

  # The same with --continue-on-save-error; space is short for every save after the first.
  rm -rf "${disk:?}/$run"
  run="$tag-cont"
  exits_within 60 "disk full, --continue-on-save-error" "$work/cont.log" \
    mpi 2 "$train" "${common[@]}" --logs "$disk" --name "$run" --max-steps 6 --save-every-n-steps 1 \
    --keep-checkpoints 3 --continue-on-save-error
  warnings=$(grep -cE "^warning: checkpoint step_[0-9]+ failed: .*(No space left|disk full)" "$work/cont.log")
  saves_failed=$(( 6 - $(grep -c "^saved " "$work/cont.log") ))
  echo "   $warnings warning line(s), $saves_failed of 6 saves failed, exit $rc"
  check "continue: training reaches step 6" test "$(last_metrics_step "$disk/$run/metrics.jsonl")" = 6
  # The final save's failure ends the run, so it is reported as an error, not a warning.
  check "continue: one warning line per failed periodic save, naming it and the cause ($warnings for $saves_failed - 1)" \
    test "$warnings" -eq $(( saves_failed - 1 )) -a "$warnings" -ge 1
  # trainer.cpp: a failed save at the end of training (or at a stop) still fails the run.
  check "continue: the final save failed too, so the run ends 'stopped' with exit 1 (got $rc)" \
    test $rc -eq 1 -a "$(grep -c "^coca-train: checkpoint step_000006 failed" "$work/cont.log")" -eq 1 \
         -a "$(grep -c "^stopped: 6 steps" "$work/cont.log")" -eq 1
  check "continue: latest names a complete checkpoint" latest_is_complete "$disk/$run"
  check "continue: no partial checkpoint directory left" no_leftovers "$disk/$run"
fi
finish
