#!/usr/bin/env bash
# Processes killed outright (label faults): nothing gets to clean up, so what is on disk must
# already be safe.
#   1. SIGKILL of one rank mid-run: the job ends within 60 s, non-zero, naming the rank; the last
#      checkpoint resumes.
#   2. SIGKILL of the whole job (mpirun and every rank) at random moments of a run that saves
#      every step: `latest` always names a complete checkpoint, no checkpoint reported saved is
#      lost, and --resume latest works; leftovers of the interrupted save are removed, one line
#      each, when the next run starts.
#   3. The same cleanup, deterministic: planted step_*.tmp, step_*.deleting and latest.tmp.
# usage: kills.sh BUILD_DIR   (COCA_FAULTS_LONG=1: 30 kill trials instead of 6)
source "$(dirname "$0")/lib.sh"
make_fixture
logs="$work/logs"
common=(--train-data "$fx/train" --model-config "$fx/model.json" --batch-size 8 --workers 1 --warmup 2
        --log-every-n-steps 1 --save-frequency 0 --epochs 1000 --logs "$logs")
trials=6
[ "$long" = 1 ] && trials=30

rank_pids() { pgrep -f -- "^$train .*--name $1( |\$)"; }
no_ranks() { [ -z "$(rank_pids "$1")" ]; }
started() { grep -q "^step $2/" "$work/$1.log" 2>/dev/null; }
saved_once() { grep -q "^saved " "$work/$1.log" 2>/dev/null; }
rank_of() { tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p'; }
last_saved_step() { sed -n 's/^saved .*step_0*\([0-9][0-9]*\) (.*/\1/p' "$1" | tail -1; }
resume_one_more() {  # resume_one_more RUN LOG: --resume latest for one more step
  local next=$(( $(latest_step "$logs/$1") + 1 ))
  run_timed "$1: --resume latest --max-steps $next" "$2" mpi 2 "$train" "${common[@]}" --name "$1" --resume latest \
    --max-steps $next
}

# ---- 1. one rank killed --------------------------------------------------------------------------
section "SIGKILL of rank 1 mid-run"
run="$tag-one"
start_bg "$work/one.log" mpi 2 "$train" "${common[@]}" --max-steps 100000 --save-every-n-steps 3 --name "$run"
if wait_for 60 started one 7; then
  victim=""
  for p in $(rank_pids "$run"); do [ "$(rank_of "$p")" = 1 ] && victim=$p; done
  echo "   killing rank 1 (pid ${victim:-none found})"
  [ -n "$victim" ] && kill -9 "$victim"
  finish_bg 60 "rank 1 killed"
  check "rank 1 killed: the job exits non-zero" test $rc -ne 0
  check "rank 1 killed: the output names the rank" grep -Eq "rank 1\b" "$work/one.log"
  check "rank 1 killed: no rank left running" wait_for 10 no_ranks "$run"
  check "rank 1 killed: latest names a complete checkpoint" latest_is_complete "$logs/$run"
  grep -E "rank 1\b" "$work/one.log" | head -2 | sed 's/^/   | /'
  resume_one_more "$run" "$work/one-resume.log"
  check "rank 1 killed: --resume latest exits 0" test $rc -eq 0
else
  check "run reached step 7" false; show_log "$work/one.log"; finish_bg 5 "run one"
fi

# ---- 2. the whole job killed at random moments ---------------------------------------------------
section "SIGKILL of mpirun and every rank at random moments, saving every step ($trials trials)"
with_leftovers=0
for ((t = 1; t <= trials; t++)); do
  run="$tag-k$t"
  start_bg "$work/k$t.log" mpi 2 "$train" "${common[@]}" --max-steps 100000 --save-every-n-steps 1 --name "$run"
  if ! wait_for 60 saved_once "k$t"; then
    check "trial $t: a first checkpoint was saved" false; show_log "$work/k$t.log"; finish_bg 5 "trial $t"; continue
  fi
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", r / 32768 * 1.5 }')"
  kill -9 "$bg_pid" $(rank_pids "$run") 2>/dev/null
  finish_bg 10 "trial $t: killed"
  wait_for 10 no_ranks "$run"
  reported=$(last_saved_step "$work/k$t.log")
  leftovers=$(cd "$logs/$run/checkpoints" && ls -d ./*.tmp ./*.deleting 2>/dev/null | sed 's|^\./||')
  echo "   latest $(latest_name "$logs/$run"), last reported saved step ${reported:-none}, leftovers: ${leftovers:-none}"
  check "trial $t: latest names a complete checkpoint" latest_is_complete "$logs/$run"
  check "trial $t: no checkpoint reported saved is lost (latest >= step ${reported:-0})" \
    test "$(latest_step "$logs/$run")" -ge "${reported:-0}"
  resume_one_more "$run" "$work/k$t-resume.log"
  check "trial $t: --resume latest exits 0" test $rc -eq 0
  [ $rc -ne 0 ] && show_log "$work/k$t-resume.log"
  if [ -n "$leftovers" ]; then
    with_leftovers=$((with_leftovers + 1))
    for l in $leftovers; do
      check "trial $t: the next start removed $l, saying so" grep -q "^removed .*/$l " "$work/k$t-resume.log"
    done
  fi
  check "trial $t: no leftovers after the next run" no_leftovers "$logs/$run"
done
echo "   $with_leftovers of $trials trials were killed with a save or prune in flight"

# ---- 3. planted leftovers ------------------------------------------------------------------------
section "leftovers of an interrupted save or prune are removed at the next start"
run="$tag-planted"
ck="$logs/$run/checkpoints"
mkdir -p "$ck/step_000099.tmp" "$ck/step_000002.deleting"
echo junk >"$ck/step_000099.tmp/model.safetensors"
echo step_000002 >"$ck/latest.tmp"
mkdir -p "$ck/notes"  # not the trainer's: must be left alone
run_timed "start with leftovers" "$work/planted.log" mpi 2 "$train" "${common[@]}" --max-steps 1 --name "$run"
check "start with leftovers exits 0" test $rc -eq 0
for l in step_000099.tmp step_000002.deleting latest.tmp; do
  check "removed $l, saying so" grep -q "^removed .*/$l " "$work/planted.log"
done
check "no leftovers remain" no_leftovers "$logs/$run"
check "a directory that is not the trainer's is kept" test -d "$ck/notes"
finish
