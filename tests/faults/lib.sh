# Sourced by every tests/faults/<area>.sh: what the fault-injection scripts share.
#   check DESC CMD...        PASS/FAIL line; counts
#   skip DESC                SKIP line (a case this machine cannot run)
#   run_timed LABEL LOG CMD...
#                            runs CMD (stdout+stderr to LOG), sets $rc and $secs, prints both
#   exits_within N LABEL LOG CMD...
#                            the same in the background in its own process group, polled; past
#                            N seconds the group is killed with SIGKILL, rc=137 and a FAIL line
#   start_bg LOG CMD...      CMD in the background in its own process group: $bg_pid (= pgid);
#                            SIGINT not ignored, as for a job started from a terminal
#   finish_bg N LABEL        waits up to N s for $bg_pid (else SIGKILL + FAIL); sets $rc, $secs
#   wait_for N CMD...        polls CMD every 0.1 s for up to N s; status 1 on timeout
#   mpi NP CMD...            mpirun for the tests (root allowed, oversubscribed)
#   make_fixture [ARGS...]   make_train_fixture into $fx (once per script)
#   one_line_error LABEL NAMES MAXLEN CMD...
#                            CMD exits 1..127 with one stderr line naming one of NAMES ('|')
#   finish                   prints "N passed, M failed" and exits (1 if any failed, 77 if
#                            nothing ran but skips)
# Each script runs in a fresh mktemp directory ($work), removed (and any tmpfs under it
# unmounted, any process group it started killed) by the EXIT trap.
set -u
if [ $# -lt 1 ]; then echo "usage: $0 BUILD_DIR" >&2; exit 2; fi
build=$(cd "$1" && pwd) || exit 2
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
train="$build/coca-train"
coca_eval="$build/coca-eval"
coca_shard="$build/data_tools/coca-shard"
fixture_bin="$build/tests/train/make_train_fixture"
long=${COCA_FAULTS_LONG:-0}
area=$(basename "$0" .sh)
export OMP_NUM_THREADS=1
# A rank that loses its peer gives up after this long instead of the 10-minute default.
export COCA_COLLECTIVE_TIMEOUT_S=${COCA_COLLECTIVE_TIMEOUT_S:-30}
work=$(mktemp -d "/tmp/coca-faults-$area.XXXXXX")
fx="$work/fx"
tag="faults$$"  # in every --name, so pgrep finds this script's processes only
passed=0 failed=0 skipped=0
rc=0 secs=0 bg_pid=""
bg_groups=() mounts=()

cleanup() {
  local g m
  for g in "${bg_groups[@]}"; do kill -9 -- "-$g" 2>/dev/null; done
  # Ranks live in process groups of their own: any of this script's left behind, by its tag.
  for g in $(pgrep -f -- "--name $tag-"); do kill -9 "$g" 2>/dev/null; done
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
  if [ -n "${COCA_FAULTS_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

check() {  # check DESC CMD...
  local what=$1; shift
  if "$@"; then echo "PASS $what"; passed=$((passed + 1)); else echo "FAIL $what"; failed=$((failed + 1)); fi
}
skip() { echo "SKIP $1"; skipped=$((skipped + 1)); }
section() { echo; echo "== $area: $*"; }

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

run_timed() {  # run_timed LABEL LOG CMD...
  local label=$1 log=$2; shift 2
  local t0; t0=$(now)
  "$@" >"$log" 2>&1
  rc=$?
  secs=$(elapsed "$t0")
  echo "   [$label] exit $rc after ${secs} s"
}

start_bg() {  # start_bg LOG CMD...: own process group, so a kill reaches mpirun and every rank
  local log=$1; shift
  bg_t0=$(now)
  # A function would run in a subshell that does not pass signals on: run mpirun itself.
  [ "$1" = mpi ] && set -- "${mpirun_cmd[@]}" -np "$2" "${@:3}"
  # Job control for this one launch: the job gets a process group of its own (pgid = pid) and,
  # unlike a plain `&` job of a script, does not start with SIGINT ignored (bash could not even
  # trap it then), so it sees a Ctrl-C as it would from a terminal.
  set -m
  "$@" >"$log" 2>&1 </dev/null &
  bg_pid=$!
  set +m
  bg_groups+=("$bg_pid")
}

finish_bg() {  # finish_bg N LABEL: wait up to N s for $bg_pid
  local limit=$1 label=$2 pid=$bg_pid
  local deadline; deadline=$(awk -v t="$(now)" -v n="$limit" 'BEGIN { printf "%.3f", t + n }')
  while kill -0 "$pid" 2>/dev/null; do
    if awk -v t="$(now)" -v d="$deadline" 'BEGIN { exit !(t > d) }'; then
      kill -9 -- "-$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      rc=137
      secs=$(elapsed "$bg_t0")
      echo "   [$label] still running after ${limit} s: killed"
      check "$label exits within ${limit} s" false
      return 1
    fi
    # Reap a finished child (kill -0 succeeds on a zombie until it is waited for).
    if [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then break; fi
    sleep 0.1
  done
  wait "$pid"
  rc=$?
  secs=$(elapsed "$bg_t0")
  kill -9 -- "-$pid" 2>/dev/null  # stragglers of the group (an orphaned rank), if any
  echo "   [$label] exit $rc after ${secs} s"
  return 0
}

exits_within() {  # exits_within N LABEL LOG CMD...
  local limit=$1 label=$2 log=$3; shift 3
  start_bg "$log" "$@"
  finish_bg "$limit" "$label"
}

wait_for() {  # wait_for N CMD...
  local limit=$1; shift
  local i
  for ((i = 0; i < limit * 10; i++)); do "$@" && return 0; sleep 0.1; done
  return 1
}

mpirun_cmd=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
mpi() {  # mpi NP CMD...
  local np=$1; shift
  "${mpirun_cmd[@]}" -np "$np" "$@"
}

make_fixture() {
  [ -d "$fx" ] && return 0
  if [ ! -x "$fixture_bin" ]; then echo "FAIL fixture: $fixture_bin is not built"; failed=$((failed + 1)); finish; fi
  "$fixture_bin" "$fx" "$@" >"$work/fixture.log" 2>&1 || {
    echo "FAIL fixture: make_train_fixture $*"; cat "$work/fixture.log"; failed=$((failed + 1)); finish; }
}

# The step a run's checkpoints/latest names (-1 when none), and checks on that checkpoint.
latest_name() { head -1 "$1/checkpoints/latest" 2>/dev/null; }
latest_step() {
  local n; n=$(latest_name "$1")
  [[ $n =~ ^step_0*([0-9]+)$ ]] && echo "$((10#${BASH_REMATCH[1]:-0}))" || echo -1
}
complete_checkpoint() {  # complete_checkpoint DIR: the three files a resume reads
  [ -s "$1/state.json" ] && [ -s "$1/model.safetensors" ] && [ -s "$1/optimizer.safetensors" ]
}
latest_is_complete() {  # latest_is_complete RUN_DIR
  local n; n=$(latest_name "$1")
  [ -n "$n" ] && complete_checkpoint "$1/checkpoints/$n"
}
no_leftovers() {  # no step_*.tmp / *.deleting / latest.tmp under RUN_DIR/checkpoints
  [ -z "$(find "$1/checkpoints" -maxdepth 1 \( -name '*.tmp' -o -name '*.deleting' \) 2>/dev/null)" ]
}
# The last "step" of a metrics.jsonl, and the total a run's startup line announced.
last_metrics_step() { python3 -c 'import json,sys
s=[json.loads(l).get("step") for l in open(sys.argv[1]) if l.strip()]
s=[x for x in s if x is not None]
print(s[-1] if s else -1)' "$1" 2>/dev/null || echo -1; }
# ("..., 63 steps over 4 epochs (...)" or "..., 63 steps (epoch 1 of 4 ends at step 18)")
announced_steps() { sed -nE 's/^coca-train: .* ([0-9]+) steps (over|\(epoch).*/\1/p' "$1" | head -1; }
# check_ran_to_end LABEL LOG METRICS: the last run ($rc) exited 0 and its metrics end at the step
# its startup line announced; leaves both numbers in $announced and $last.
check_ran_to_end() {
  announced=$(announced_steps "$2")
  last=$(last_metrics_step "$3")
  check "$1: exits 0" test $rc -eq 0
  check "$1: trains to the announced end (step $last of ${announced:-none})" \
    test -n "$announced" -a "$last" = "${announced:-x}"
}
show_log() {  # the tail of a log, indented, for a failure's context
  echo "   --- $(basename "$1") (last ${2:-8} lines)"; tail -n "${2:-8}" "$1" 2>/dev/null | sed 's/^/   | /'
}

finish() {
  echo
  local skips=""
  [ "$skipped" -gt 0 ] && skips=" ($skipped skipped)"
  echo "$area: $passed passed, $failed failed$skips"
  [ "$failed" -gt 0 ] && exit 1
  [ "$passed" -eq 0 ] && [ "$skipped" -gt 0 ] && exit 77
  exit 0
}

# Runs CMD...; passes when it exits 1..127 with exactly one stderr line that holds one of the
# strings in NAMES (separated by '|') and, if MAXLEN is given, is shorter than that not
# counting those strings (a file's path is as long as the user made it).
one_line_error() {  # one_line_error LABEL NAMES MAXLEN CMD...
  local label=$1 names=$2 maxlen=$3; shift 3
  local t0; t0=$(now)
  "$@" >"$work/out.txt" 2>"$work/err.txt"
  local code=$? lines len named=no
  secs=$(elapsed "$t0")
  lines=$(grep -c "" "$work/err.txt")
  local line n; line=$(head -1 "$work/err.txt")
  local IFS='|'
  for n in $names; do
    grep -qF -- "$n" "$work/err.txt" && named=yes
    line=${line//"$n"/}
  done
  len=${#line}
  echo "   [$label] exit $code after ${secs} s: $(head -1 "$work/err.txt" | cut -c1-200)"
  check "$label: exit 1..127 (got $code)" test $code -ge 1 -a $code -le 127
  check "$label: exactly one line on stderr (got $lines)" test "$lines" -eq 1
  check "$label: it names ${names//|/ or }" test $named = yes
  [ -n "$maxlen" ] && check "$label: the line is shorter than $maxlen characters besides the path ($len)" test "$len" -lt "$maxlen"
  [ "$lines" -gt 1 ] && sed -n '1,6p' "$work/err.txt" | cut -c1-200 | sed 's/^/   | /'
  return 0
}
