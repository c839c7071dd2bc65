#!/usr/bin/env bash
# test_results_table.sh BUILD_DIR SOURCE_DIR: coca-sysinfo names the machine within 5 s, and
# launch/results_table.py puts the machine, the run and the zero-shot result in its table.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- the probe
"$build/coca-sysinfo" --help | grep -q -- "--seconds" || fail "coca-sysinfo --help does not list --seconds"
if "$build/coca-sysinfo" --seconds 9 >"$tmp/out" 2>"$tmp/err"; then fail "coca-sysinfo accepted --seconds 9"; fi
grep -q -- "--seconds" "$tmp/err" || fail "coca-sysinfo's error does not name --seconds: $(cat "$tmp/err")"
start=$(date +%s%N)
"$build/coca-sysinfo" >"$tmp/sysinfo.txt"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
cat "$tmp/sysinfo.txt"
(( ms < 5000 )) || fail "coca-sysinfo took $ms ms (limit 5000)"
model=$(sed -n 's/^cpu_model: //p' "$tmp/sysinfo.txt")
[[ -n $model && $model != "unknown CPU" ]] || fail "no CPU model"
grep -qx "cores_online: $(nproc)" "$tmp/sysinfo.txt" || fail "cores_online is not nproc ($(nproc))"
rate=$(sed -n 's/^sgemm_gflops_per_core: //p' "$tmp/sysinfo.txt")
awk -v r="$rate" 'BEGIN { exit !(r > 0.5) }' || fail "sgemm rate '$rate' is not a positive GFLOP/s figure"

# ---- the table, on made-up results
printf 'cpu_model: Test CPU 9000\ncores_online: 8\nblas_core: Haswell\nsgemm_gflops_per_core: 71.25\n' >"$tmp/fake.txt"
cat >"$tmp/metrics.jsonl" <<'JSON'
{"step": 20, "loss": 9.1, "samples_per_s": 30.0, "samples_per_s_per_rank": 15.0}
{"step": 40, "loss": 8.2, "samples_per_s": 36.0, "samples_per_s_per_rank": 18.0}
{"step": 40, "zeroshot_top1": 0.01, "zeroshot_top5": 0.05}
{"step": 60, "loss": 7.5, "samples_per_s": 34.0, "samples_per_s_per_rank": 17.0}
JSON
echo '{"top1": 0.0391, "top5": 0.1284, "mean_per_class": 0.0486, "images": 3786}' >"$tmp/zs.json"
python3 "$src/launch/results_table.py" --sysinfo "$tmp/fake.txt" --ranks 2 --threads 3 --metrics "$tmp/metrics.jsonl" \
  --zeroshot "$tmp/zs.json" --train-seconds 887.6 -o "$tmp/results.md" >"$tmp/stdout"
cat "$tmp/stdout"
cmp -s "$tmp/stdout" "$tmp/results.md" || fail "the printed and the written table differ"
row=$(tail -n 1 "$tmp/results.md")
for want in "| Test CPU 9000 (OpenBLAS Haswell) |" "| 6 (2 ranks x 3 threads, 8 online) |" "| 71.2 |" "| 60 |" \
            "| 888 |" "| 34.0 |" "| 3.91% |" "| 12.84% |" "| 4.86% |"; do
  [[ $row == *"$want"* ]] || fail "table row lacks '$want': $row"
done
head -n 1 "$tmp/results.md" | grep -q "sgemm GFLOP/s per core" || fail "header lacks the sgemm column"

# ---- bad input: one clear line naming the file, non-zero exit
printf 'cpu_model: X\n' >"$tmp/bad.txt"
if python3 "$src/launch/results_table.py" --sysinfo "$tmp/bad.txt" --ranks 1 --threads 1 2>"$tmp/err"; then
  fail "a sysinfo file without cores_online was accepted"
fi
grep -q "bad.txt has no 'cores_online:'" "$tmp/err" || fail "unclear error: $(cat "$tmp/err")"
echo "PASS"
