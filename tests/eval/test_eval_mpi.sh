#!/usr/bin/env bash
# coca-eval retrieval and caption end to end: the metrics (and the generated captions) of
# 2 and 3 ranks under mpirun, with different batch sizes, equal the single-process ones.
# Usage: test_eval_mpi.sh COCA_EVAL MAKE_EVAL_FIXTURE
set -euo pipefail
EVAL=$1
FIXTURE=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$FIXTURE" "$tmp" >/dev/null
common=(--model-config "$tmp/model.json" --weights "$tmp/model.safetensors" --data "$tmp/captions")

for sub in retrieval caption; do
  "$EVAL" "$sub" --help | grep -q -- "--output" || fail "$sub --help lists no --output"
done
if "$EVAL" caption --data "$tmp/captions" >/dev/null 2>&1; then fail "caption without --weights succeeded"; fi
if "$EVAL" caption "${common[@]}" --method nucleus >/dev/null 2>&1; then fail "unknown --method accepted"; fi

# Retrieval: 10 images, 20 captions (image 0 has a repeated row at the end).
"$EVAL" retrieval "${common[@]}" --batch-size 4 --output "$tmp/r1.json" >/dev/null
grep -q '"images": 10' "$tmp/r1.json" || fail "retrieval: expected 10 images: $(cat "$tmp/r1.json")"
grep -q '"texts": 20' "$tmp/r1.json" || fail "retrieval: expected 20 texts: $(cat "$tmp/r1.json")"
for np in 2 3; do
  $MPIRUN -np $np "$EVAL" retrieval "${common[@]}" --batch-size 3 --output "$tmp/r$np.json" >/dev/null
  diff "$tmp/r1.json" "$tmp/r$np.json" || fail "retrieval with $np ranks differs from one process"
done

run_caption() {  # name, options...
  local name=$1
  shift
  "$EVAL" caption "${common[@]}" --batch-size 5 "$@" --output "$tmp/$name.1.json" --captions "$tmp/$name.1.caps" >/dev/null
  grep -q '"cider_d"' "$tmp/$name.1.json" || fail "caption $name: no CIDEr-D in $(cat "$tmp/$name.1.json")"
  grep -q '"bleu4"' "$tmp/$name.1.json" || fail "caption $name: no BLEU-4"
  for np in 2 3; do
    $MPIRUN -np $np "$EVAL" caption "${common[@]}" --batch-size 2 "$@" --output "$tmp/$name.$np.json" \
      --captions "$tmp/$name.$np.caps" >/dev/null
    diff "$tmp/$name.1.json" "$tmp/$name.$np.json" || fail "caption $name with $np ranks: metrics differ"
    diff "$tmp/$name.1.caps" "$tmp/$name.$np.caps" || fail "caption $name with $np ranks: captions differ"
  done
}
run_caption greedy --method greedy
run_caption beam --method beam --beams 3 --length-penalty 0.8
run_caption sample --method sample --top-k 10 --top-p 0.9 --temperature 0.8 --seed 5
grep -q '"key": "img9"' "$tmp/greedy.1.caps" || fail "captions file lacks image img9"
echo "coca-eval retrieval/caption: distributed equals single-process"
