#!/usr/bin/env bash
# Stopping a run with signals (label faults). Every stopped run must exit promptly, leave a
# complete `latest`, leave no rank behind, and (where the stop is graceful) continue with
# --resume latest to weights bit-identical to an uninterrupted run.
#   a. SIGTERM to every rank (what Slurm sends): save, exit 0
#   b. SIGUSR1 to mpirun (forwarded to the ranks): save, exit 0
#   c. Ctrl-C through launch/graceful.sh (SIGINT to its whole process group): save, exit 130
#   d. SIGTERM to graceful.sh alone: save, exit 143
#   e. a second Ctrl-C through graceful.sh: stop at once, the last complete checkpoint stays latest
#   f. Ctrl-C to plain mpirun: whatever mpirun does, the job ends within 60 s and `latest`, if
#      any, is complete (README.md records the exit code and whether a checkpoint was saved)
# usage: signals.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
make_fixture --uneven 100,100,100,100,100,100,50
logs="$work/logs"
steps=30
base=(--model-config "$fx/model.json" --workers 1 --warmup 2 --log-every-n-steps 1 --save-frequency 0
      --epochs 1000 --logs "$logs")
common=(--train-data "$fx/train" "${base[@]}" --batch-size 32 --max-steps $steps)

rank_pids() { pgrep -f -- "^$train .*--name $1( |\$)"; }
no_ranks() { [ -z "$(rank_pids "$1")" ]; }
no_rank_left() { wait_for 10 no_ranks "$1"; }
started() { grep -q "^step $2/" "$work/$1.log" 2>/dev/null; }
final_model() { echo "$logs/$1/checkpoints/$(latest_name "$logs/$1")/model.safetensors"; }

# The uninterrupted reference.
run_timed "uninterrupted, $steps steps" "$work/ref.log" mpi 2 "$train" "${common[@]}" --name "$tag-ref"
[ $rc -eq 0 ] || { check "uninterrupted reference run exits 0" false; show_log "$work/ref.log"; finish; }

# Resumes RUN with --resume latest to the end and compares with the reference.
resume_matches() {  # resume_matches RUN LABEL
  local run=$1 label=$2
  check "$label: latest names a complete checkpoint" latest_is_complete "$logs/$run"
  run_timed "$label: --resume latest" "$work/$run-resume.log" mpi 2 "$train" "${common[@]}" --name "$run" --resume latest
  check "$label: --resume latest exits 0" test $rc -eq 0
  check "$label: resumed to step $steps bit-identical to the uninterrupted run" \
    cmp -s "$(final_model "$tag-ref")" "$(final_model "$run")"
}

# ---- a. SIGTERM to the ranks -----------------------------------------------------------------------
section "a. SIGTERM to every rank"
run="$tag-a"
start_bg "$work/a.log" mpi 2 "$train" "${common[@]}" --name "$run"
if wait_for 60 started a 3; then
  kill -TERM $(rank_pids "$run") 2>/dev/null
  finish_bg 60 "SIGTERM to the ranks"
  check "SIGTERM to the ranks: exit 0" test $rc -eq 0
  check "SIGTERM to the ranks: saved (stop requested by signal)" grep -q "^saved .*(stop requested by signal)" "$work/a.log"
  check "SIGTERM to the ranks: says how to resume" grep -q -- "--resume latest" "$work/a.log"
  check "SIGTERM to the ranks: stopped before the end" test "$(latest_step "$logs/$run")" -lt $steps
  check "SIGTERM to the ranks: no rank left running" no_rank_left "$run"
  resume_matches "$run" "SIGTERM to the ranks"
else
  check "run a reached step 3" false; show_log "$work/a.log"; finish_bg 5 "run a"
fi

# ---- b. SIGUSR1 to mpirun --------------------------------------------------------------------------
section "b. SIGUSR1 to mpirun"
run="$tag-b"
start_bg "$work/b.log" mpi 2 "$train" "${common[@]}" --name "$run"
if wait_for 60 started b 3; then
  kill -USR1 "$bg_pid"
  finish_bg 60 "SIGUSR1 to mpirun"
  check "SIGUSR1 to mpirun: exit 0" test $rc -eq 0
  check "SIGUSR1 to mpirun: saved (stop requested by signal)" grep -q "^saved .*(stop requested by signal)" "$work/b.log"
  check "SIGUSR1 to mpirun: stopped before the end" test "$(latest_step "$logs/$run")" -lt $steps
  check "SIGUSR1 to mpirun: no rank left running" no_rank_left "$run"
  resume_matches "$run" "SIGUSR1 to mpirun"
else
  check "run b reached step 3" false; show_log "$work/b.log"; finish_bg 5 "run b"
fi

# ---- c, d. launch/graceful.sh ----------------------------------------------------------------------
# start_bg gives graceful.sh a process group of its own (pgid = its pid), standing for the
# terminal's foreground group that a Ctrl-C reaches; graceful.sh puts mpirun in another group.
graceful_case() {  # graceful_case LETTER DESCRIPTION EXPECTED_RC KILL_ARGS...
  local letter=$1 what=$2 want=$3; shift 3
  local run="$tag-$letter"
  section "$letter. $what"
  start_bg "$work/$letter.log" "$repo/launch/graceful.sh" "${mpirun_cmd[@]}" -np 2 "$train" "${common[@]}" --name "$run"
  if ! wait_for 60 started "$letter" 3; then
    check "run $letter reached step 3" false; show_log "$work/$letter.log"; finish_bg 5 "run $letter"; return
  fi
  local target=$bg_pid
  [ "$1" = group ] && target="-$bg_pid"
  kill "$2" -- "$target"
  finish_bg 60 "$what"
  check "$what: exit $want" test $rc -eq "$want"
  check "$what: saved (stop requested by signal)" grep -q "^saved .*(stop requested by signal)" "$work/$letter.log"
  check "$what: stopped before the end" test "$(latest_step "$logs/$run")" -lt $steps
  check "$what: no rank left running" no_rank_left "$run"
  [ $rc -ne "$want" ] && show_log "$work/$letter.log"
  resume_matches "$run" "$what"
}
graceful_case c "Ctrl-C (SIGINT to the process group) through graceful.sh" 130 group -INT
graceful_case d "SIGTERM to graceful.sh alone" 143 process -TERM

# ---- e. a second Ctrl-C ----------------------------------------------------------------------------
section "e. a second Ctrl-C through graceful.sh stops at once"
# Steps of 240 samples per rank (about half a second here), so that the second Ctrl-C, sent as
# soon as graceful.sh has acted on the first, lands before the step and the save are over.
slow=(--train-data "$fx/uneven" "${base[@]}" --batch-size 240)
run="$tag-e"
start_bg "$work/e.log" "$repo/launch/graceful.sh" "${mpirun_cmd[@]}" -np 2 "$train" "${slow[@]}" \
  --max-steps $steps --save-every-n-steps 2 --name "$run"
first_taken() { grep -q "^graceful: SIGINT: asking" "$work/e.log"; }
if wait_for 60 started e 3; then
  kill -INT -- "-$bg_pid"
  wait_for 5 first_taken
  in_time=yes
  if ! kill -0 "$bg_pid" 2>/dev/null || grep -q "^stopped at step" "$work/e.log"; then
    in_time=no
    skip "second Ctrl-C: the run had already stopped when it was sent (a machine this fast needs slower steps)"
  fi
  t_second=$(now)
  kill -INT -- "-$bg_pid" 2>/dev/null
  finish_bg 60 "second Ctrl-C"
  after=$(elapsed "$t_second")
  echo "   exit $rc, ${after} s after the second Ctrl-C"
  check "second Ctrl-C: exits within 10 s of it" awk -v s="$after" 'BEGIN { exit !(s <= 10) }'
  check "second Ctrl-C: exit non-zero (got $rc)" test $rc -ne 0
  [ $in_time = yes ] && check "second Ctrl-C: says it stops at once" grep -q "again: stopping at once" "$work/e.log"
  check "second Ctrl-C: no rank left running" no_rank_left "$run"
  check "second Ctrl-C: latest names a complete checkpoint" latest_is_complete "$logs/$run"
  run_timed "resume after the second Ctrl-C" "$work/e-resume.log" \
    mpi 2 "$train" "${slow[@]}" --name "$run" --resume latest \
    --max-steps $(( $(latest_step "$logs/$run") + 1 ))
  check "second Ctrl-C: --resume latest exits 0" test $rc -eq 0
else
  check "run e reached step 3" false; show_log "$work/e.log"; finish_bg 5 "run e"
fi

# ---- f. Ctrl-C to plain mpirun ---------------------------------------------------------------------
section "f. SIGINT to plain mpirun (no graceful.sh)"
run="$tag-f"
# Many steps, so that whatever happens is mpirun's doing and not the end of the run.
start_bg "$work/f.log" mpi 2 "$train" --train-data "$fx/train" "${base[@]}" --batch-size 32 --max-steps 100000 \
  --save-every-n-steps 2 --name "$run"
if wait_for 60 started f 5; then
  kill -INT "$bg_pid"
  finish_bg 60 "SIGINT to plain mpirun"
  check "SIGINT to plain mpirun: the run did not simply run to its end" test "$(latest_step "$logs/$run")" -lt 100000
  saved=no
  grep -q "^saved .*(stop requested by signal)" "$work/f.log" && saved=yes
  echo "   observed: exit $rc, checkpoint saved by the signal: $saved, latest: $(latest_name "$logs/$run")"
  check "SIGINT to plain mpirun: no rank left running" no_rank_left "$run"
  check "SIGINT to plain mpirun: latest names a complete checkpoint" latest_is_complete "$logs/$run"
else
  check "run f reached step 5" false; show_log "$work/f.log"; finish_bg 5 "run f"
fi
finish
