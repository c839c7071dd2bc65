#!/usr/bin/env bash
# Checkpoint directory trouble (label faults).
#   a. Rolled-back resume with --keep-checkpoints 1: resuming step 4 of a run that reached step 8,
#      in the same run directory, must publish its own steps and never delete the other
#      timeline's newer checkpoint; `latest` always names a directory that exists.
#   b. Disk full (a tmpfs just big enough for one checkpoint; needs root, else SKIP): the failed
#      save is one error line naming the checkpoint and the cause, the run stops non-zero,
#      `latest` still names a complete checkpoint and no partial directory is left; with
#      --continue-on-save-error training goes on to the end with one warning per failed save.
#   c. Killed while re-saving the step `latest` names (COCA_TEST_KILL_AT=checkpoint-replace stops
#      the process between the two renames), with the one-step exchange and with the fallback
#      that sets the old copy aside first: `--resume latest` finds a complete checkpoint and ends
#      bit-identical to an uninterrupted run.
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

# ---- c. killed between the renames of a re-save ---------------------------------------------------
section "c. killed while re-saving the checkpoint latest names"
# A constant lr: the runs below stop at different --max-steps, and must still share one schedule.
common+=(--lr-scheduler const)
ref="$tag-ref"
run_timed "uninterrupted, to step 6" "$work/ref.log" \
  "$train" "${common[@]}" --logs "$logs" --name "$ref" --max-steps 6 --save-every-n-steps 2
check "uninterrupted run exits 0" test $rc -eq 0
for mode in exchange fallback; do
  run="$tag-kill-$mode"
  ck="$logs/$run/checkpoints"
  no_exchange=0
  [ $mode = fallback ] && no_exchange=1
  run_timed "$mode: to step 4, saving every 2" "$work/kill1-$mode.log" \
    "$train" "${common[@]}" --logs "$logs" --name "$run" --max-steps 4 --save-every-n-steps 2
  # Resumed from step 2 with saves every 4: the next save re-saves step 4, which latest names.
  run_timed "$mode: resume step 2, killed re-saving step 4" "$work/kill2-$mode.log" \
    env COCA_TEST_KILL_AT=checkpoint-replace COCA_TEST_NO_RENAME_EXCHANGE=$no_exchange \
    "$train" "${common[@]}" --logs "$logs" --name "$run" --resume "$ck/step_000002" --max-steps 6 \
    --save-every-n-steps 4
  check "$mode: the hook killed the re-save of step_000004 (exit $rc)" \
    test $rc -eq 137 -a "$(latest_name "$logs/$run")" = step_000004
  ls "$ck" | tr '\n' ' ' | sed 's/^/   left: /'; echo
  if [ $mode = exchange ]; then
    check "exchange: step_000004 stayed complete at the kill" complete_checkpoint "$ck/step_000004"
  else
    check "fallback: the kill came with step_000004 set aside" \
      test ! -e "$ck/step_000004" -a -d "$ck/step_000004.deleting" -a -d "$ck/step_000004.tmp"
  fi
  run_timed "$mode: --resume latest to step 6" "$work/kill3-$mode.log" \
    "$train" "${common[@]}" --logs "$logs" --name "$run" --resume latest --max-steps 6 --save-every-n-steps 2
  check "$mode: --resume latest continues from step_000004 and exits 0" \
    test $rc -eq 0 -a "$(grep -c "^resumed from .*step_000004" "$work/kill3-$mode.log")" -eq 1
  [ $mode = fallback ] && check "fallback: the start-up put step_000004 back" \
    grep -q "^restored .*step_000004 from .*step_000004.deleting" "$work/kill3-$mode.log"
  check "$mode: step 6 equals the uninterrupted run's" \
    cmp -s "$ck/step_000006/model.safetensors" "$logs/$ref/checkpoints/step_000006/model.safetensors"
  check "$mode: no leftovers" no_leftovers "$logs/$run"
done
finish
