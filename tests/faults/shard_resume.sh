#!/usr/bin/env bash
# coca-shard killed and run again: a WebDataset conversion (40 tars of 120 samples read through
# `pipe:sleep 0.05; cat ...`, images re-encoded, so that it takes a few seconds) is killed with
# SIGKILL at 3 random points in a row, each once a random number of further tars are finished
# plus 0-150 ms (so that kills land inside a tar or between a part's shards and its record);
# the second killed run has 2 ranks. A fourth run with the same arguments finishes it. Its
# samples (keys, image bytes, captions) must be those of an uninterrupted run, no temporary
# shard may be left, and the finished set is then refused without --append / --overwrite.
source "$(dirname "$0")/lib.sh"
wds_tool="$build/tests/data/wds_tool"
if [ ! -x "$wds_tool" ] || [ ! -x "$coca_shard" ]; then skip "wds_tool or coca-shard not built"; finish; fi
seed=${COCA_FAULTS_SEED:-$RANDOM}
RANDOM=$seed
echo "random seed $seed (COCA_FAULTS_SEED=$seed repeats this run)"
tars=40
"$wds_tool" make "$work/in" $tars 120 --side 96 >"$work/make.log" 2>&1 || { cat "$work/make.log"; exit 1; }
args=(--format wds --input "pipe:sleep 0.05; cat $work/in/{00000..000$((tars - 1))}.tar" --max-side 48 --samples-per-shard 50 --quiet)

section "uninterrupted run"
run_timed "reference" "$work/ref.log" "$coca_shard" "${args[@]}" --output "$work/ref"
check "reference run exits 0" test $rc -eq 0
"$wds_tool" dump "$work/ref" | sort >"$work/ref.txt"
check "reference has samples" test -s "$work/ref.txt"

records() { find "$work/out/.coca-shard" -name 'part-*.json' 2>/dev/null | wc -l; }
has_records() { [ "$(records)" -ge "$1" ]; }
section "3 kills with SIGKILL, then a run to the end"
for k in 1 2 3; do
  before=$(records)
  # Somewhere in the tars still to do: past a random number of new records, then a random pause.
  target=$((before + 1 + RANDOM % 6))
  # At least 6 tars (0.3 s of pipe: sleeps alone) left, so that the kill lands before the end.
  [ $target -gt $((tars - 6)) ] && target=$((tars - 6))
  pause=$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", (r % 150) / 1000 }')
  # The second run on 2 ranks: a conversion continues on any number of processes.
  launcher=()
  [ $k = 2 ] && launcher=(mpi 2)
  start_bg "$work/kill$k.log" "${launcher[@]}" "$coca_shard" "${args[@]}" --output "$work/out"
  wait_for 60 has_records $target
  sleep "$pause"
  kill -0 "$bg_pid" 2>/dev/null && running=yes || running=no
  kill -9 -- "-$bg_pid" 2>/dev/null
  wait "$bg_pid" 2>/dev/null
  echo "   kill $k: after $(records) of $tars tars finished (waited for $target, then ${pause}s)"
  check "kill $k came before the end of the run" test $running = yes
  check "kill $k: no index.json yet, or a whole one" \
    bash -c "[ ! -e '$work/out/index.json' ] || python3 -c 'import json,sys; json.load(open(sys.argv[1]))' '$work/out/index.json'"
done
run_timed "resumed" "$work/resumed.log" "$coca_shard" "${args[@]}" --output "$work/out"
check "the run after the kills exits 0" test $rc -eq 0
"$wds_tool" dump "$work/out" | sort >"$work/out.txt"
check "the same samples as the uninterrupted run ($(wc -l <"$work/ref.txt") samples: keys, image bytes, captions)" \
  cmp -s "$work/ref.txt" "$work/out.txt"
check "the same skip counts" python3 -c 'import json,sys
a, b = (json.load(open(p))["extra"]["skipped_by_reason"] for p in sys.argv[1:])
sys.exit(a != b)' "$work/ref/index.json" "$work/out/index.json"
check "no temporary shard left" test -z "$(find "$work/out" -name '.tmp-*')"
check "the index lists every shard file there is, once" python3 -c 'import json,os,sys
d = sys.argv[1]
listed = sorted(s["file"] for s in json.load(open(os.path.join(d, "index.json")))["shards"])
there = sorted(f for f in os.listdir(d) if f.startswith("shard-"))
sys.exit(listed != there)' "$work/out"
one_line_error "a finished set is not converted again" "--append" 300 \
  "$coca_shard" "${args[@]}" --output "$work/out"
# An unfinished conversion is continued only with its own settings.
start_bg "$work/other.log" "$coca_shard" "${args[@]}" --output "$work/other"
wait_for 60 test -e "$work/other/.coca-shard/part-00000.json"
kill -9 -- "-$bg_pid" 2>/dev/null
wait "$bg_pid" 2>/dev/null
other=("${args[@]}")
other[5]=40  # --max-side 48 -> 40
one_line_error "an unfinished conversion with other settings is refused" "unfinished conversion|max-side|image_size" 300 \
  "$coca_shard" "${other[@]}" --output "$work/other"
finish
