#!/usr/bin/env bash
# coca-train --report-to tensorboard end to end (label mpi): two ranks train a few steps of the
# micro fixture; rank 0's event file parses (both CRCs of every record, the Event protobuf) with
# our own reader (check_tensorboard.py, stdlib only) and its train/* scalars equal metrics.jsonl's
# for the same steps. A resume from the middle with another --lr writes a second file, and what
# TensorBoard shows then holds each step once, with the resumed run's values. Without the flag
# no event file is written; --report-to wandb is one clear error line.
# usage: test_tensorboard_run.sh BUILD_DIR
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh" coca-tb-test "$1"
common=(--train-data "$work/fx/train" --model-config "$work/fx/model.json" --batch-size 8 --workers 1
        --logs "$work/logs" --warmup 2 --log-every-n-steps 1 --save-frequency 0)

# 1. A fresh run: one event file, its scalars equal metrics.jsonl's.
"${mpirun_[@]}" "$train" "${common[@]}" --max-steps 6 --lr 2e-3 --name tb --save-every-n-steps 3 --report-to tensorboard \
  >"$work/tb.log" 2>&1
check "run with --report-to tensorboard exits 0" test $? -eq 0
check "the run says where the event files are" grep -q "tensorboard: writing to $work/logs/tb/tensorboard" "$work/tb.log"
check "event file matches metrics.jsonl" /usr/bin/python3 "$here/check_tensorboard.py" "$work/logs/tb" 1 1 6

# 2. Resume from step 3 with another lr (so steps 5-6 differ from the first run's): a second
# file; TensorBoard shows steps 1-3 from the first and 4-6 from the second, as metrics.jsonl does.
cp "$work/logs/tb/metrics.jsonl" "$work/first.jsonl"
"${mpirun_[@]}" "$train" "${common[@]}" --max-steps 6 --lr 1e-3 --name tb --resume "$work/logs/tb/checkpoints/step_000003" \
  --report-to jsonl,tensorboard >"$work/resume.log" 2>&1
check "resumed run exits 0" test $? -eq 0
check "resumed event files match the resumed metrics.jsonl" \
  /usr/bin/python3 "$here/check_tensorboard.py" "$work/logs/tb" 2 4 6
check "the resumed run's losses differ from the first run's after step 4" /usr/bin/python3 - \
  "$work/first.jsonl" "$work/logs/tb/metrics.jsonl" <<'PY'
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:3])
print("first", [a[s] for s in (5, 6)], "resumed", [b[s] for s in (5, 6)])
sys.exit(0 if a[5] != b[5] and a[6] != b[6] else 1)
PY

# 3. Without the flag: metrics.jsonl only.
"${mpirun_[@]}" "$train" "${common[@]}" --max-steps 2 --name plain >"$work/plain.log" 2>&1
check "run without --report-to exits 0" test $? -eq 0
check "run without --report-to writes no event file" test ! -e "$work/logs/plain/tensorboard"
check "run without --report-to writes metrics.jsonl" test -s "$work/logs/plain/metrics.jsonl"

# 4. wandb is refused in one line that names what is supported.
out=$("$train" "${common[@]}" --name w --report-to wandb 2>&1)
rc=$?
echo "$out"
check "--report-to wandb exits non-zero with one line naming metrics.jsonl and tensorboard" \
  test $rc -ne 0 -a "$(printf '%s\n' "$out" | wc -l)" -eq 1 -a -n "$(printf '%s' "$out" | grep metrics.jsonl | grep tensorboard)"

if [ $fail -ne 0 ]; then
  for f in "$work"/*.log; do echo "==== $f"; tail -5 "$f"; done
fi
exit $fail
