#!/usr/bin/env bash
# test_compare_recipe.sh BUILD_DIR SOURCE_DIR: launch/compare_recipe.sh in a short setting on the
# micro fixture (make_train_fixture: 256 captioned 32 px images, 64 labelled ones in 8 classes):
# one seed, 20 steps of each system, 2 ranks x 1 thread against 1 process x 2 threads. Both
# systems leave weights, coca-eval scores both, and the results files hold both rows with
# accuracies in [0, 100]. Skips (77) where /usr/bin/python3 has no torch or h5py
# (launch/test.sh installs them).
set -euo pipefail
build=$1 src=$2
/usr/bin/python3 -c "import torch, h5py" 2>/dev/null || {
  echo "SKIP: /usr/bin/python3 cannot import torch and h5py (COCA_SETUP_TORCH=1 launch/setup.sh installs them)"
  exit 77
}
work=$(mktemp -d /tmp/test_compare_recipe.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

"$build/tests/train/make_train_fixture" "$work/fx" >/dev/null
echo "a photo of a {}." >"$work/templates.txt"
out=$work/out
start=$(date +%s)
"$src/launch/compare_recipe.sh" --build "$build" --out "$out" --seeds 0 --minutes 10 --epochs 100 \
  --train-data "$work/fx/train" --eval-data "$work/fx/eval" --model-config "$work/fx/model.json" \
  --templates "$work/templates.txt" -- --max-steps 20 --warmup 5 --batch-size 8 --lr 2e-3 | tee "$work/stdout"
echo "compare_recipe took $(( $(date +%s) - start )) s"

ls "$out"/coca-seed0/checkpoints/*/model.safetensors >/dev/null 2>&1 || fail "coca-train left no weights"
[[ -s $out/torch-seed0/model.safetensors ]] || fail "the reference left no weights"
for system in coca torch; do
  [[ -s $out/$system-seed0/zeroshot.json ]] || fail "coca-eval did not score $system"
done
grep -q "^| coca (" "$out/results.md" || fail "results.md has no coca row"
grep -q "^| PyTorch reference (" "$out/results.md" || fail "results.md has no PyTorch reference row"
/usr/bin/python3 - "$out/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert set(r["systems"]) == {"coca", "torch"}, r["systems"].keys()
for name, s in r["systems"].items():
    run = s["runs"]["0"]
    for m in ("top1", "top5", "mean_per_class"):
        v = s["summary"][m]["mean"]
        assert 0.0 <= v <= 100.0, (name, m, v)
    assert run["steps"] == 20, (name, run["steps"])
    assert run["images"] == 64, (name, run["images"])
    print(f"PASS {name}: 20 steps, top-1 {run['top1']:.2f}%, top-5 {run['top5']:.2f}%")
PY
# A second call reuses finished runs (same commands) and rewrites the table.
"$src/launch/compare_recipe.sh" --build "$build" --out "$out" --seeds 0 --minutes 10 --epochs 100 \
  --train-data "$work/fx/train" --eval-data "$work/fx/eval" --model-config "$work/fx/model.json" \
  --templates "$work/templates.txt" -- --max-steps 20 --warmup 5 --batch-size 8 --lr 2e-3 >"$work/again"
[[ $(grep -c "done before, reused" "$work/again") == 2 ]] || fail "the second call did not reuse both runs: $(cat "$work/again")"
echo "PASS compare_recipe"
