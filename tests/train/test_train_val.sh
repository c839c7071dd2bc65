#!/usr/bin/env bash
# coca-train --val-data / --zeroshot-data end to end (label mpi):
#   --val-data given a classification set is refused before any work with one line naming
#   --zeroshot-data (and --zeroshot-data given a captioned set, naming --val-data);
#   two ranks with --val-data on a captioned set write a val record (loss, R@1/5/10, ranks) to
#   metrics.jsonl at every --val-frequency epoch and at the end, and zero-shot on
#   --zeroshot-data at every --zeroshot-frequency epoch and at the end;
#   the final val record's retrieval figures equal coca-eval retrieval on the final checkpoint.
# usage: test_train_val.sh BUILD_DIR
# train/: captioned, 256 samples; eval/: classification, 8 classes; uneven/: captioned, 40.
. "$(dirname "$0")/lib.sh" coca-train-val "$1" --uneven 24,16
common=(--train-data "$work/fx/train" --model-config "$work/fx/model.json" --batch-size 8 --workers 1
        --logs "$work/logs" --warmup 2 --lr 2e-3 --log-every-n-steps 4 --save-frequency 0)

# 1. The old use of --val-data (a classification set) is refused, before a run directory exists.
"$train" "${common[@]}" --name refused --val-data "$work/fx/eval" >"$work/refused.out" 2>"$work/refused.err"
rc=$?
echo "   refused: exit $rc: $(head -1 "$work/refused.err")"
check "--val-data on a classification set exits 1..127" test $rc -ge 1 -a $rc -le 127
check "... with one line on stderr" test "$(grep -c "" "$work/refused.err")" -eq 1
check "... naming --zeroshot-data and the set" grep -q -- "zero-shot evaluation moved to --zeroshot-data $work/fx/eval" "$work/refused.err"
check "... saying it is a classification set of 8 classes" grep -q -- "classification set (labels, 8 classes)" "$work/refused.err"
check "... before any work (no run directory)" test ! -e "$work/logs/refused"
"$train" "${common[@]}" --name refused2 --zeroshot-data "$work/fx/train" >"$work/refused2.out" 2>"$work/refused2.err"
rc=$?
echo "   refused2: exit $rc: $(head -1 "$work/refused2.err")"
check "--zeroshot-data on a captioned set exits 1..127 with one line naming --val-data" \
  bash -c "test $rc -ge 1 -a $rc -le 127 && test \$(grep -c '' '$work/refused2.err') -eq 1 && grep -q -- --val-data '$work/refused2.err'"

# 2. Two ranks, 3 epochs of 4 steps: validation at epoch 2 (--val-frequency 2) and at the end
# (epoch 3); zero-shot at epochs 1, 2 (--zeroshot-frequency 1) and at the end.
printf 'a photo of a {} on a grey background\n' > "$work/templates.txt"
"${mpirun_[@]}" "$train" "${common[@]}" --name val --epochs 3 --train-num-samples 64 \
  --val-data "$work/fx/uneven" --val-frequency 2 \
  --zeroshot-data "$work/fx/eval" --zeroshot-frequency 1 --zeroshot-templates "$work/templates.txt" \
  >"$work/val.log" 2>&1
rc=$?
check "two-rank training with --val-data and --zeroshot-data exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -5 "$work/val.log"
grep "^val " "$work/val.log" | cut -c1-200 | sed 's/^/   /'
check "one readable val line per val record" test "$(grep -c "^val epoch" "$work/val.log")" -eq 2
check "val records at epochs 2 and 3, zero-shot at 1, 2 and 3, with sound values" python3 - "$work/logs/val/metrics.jsonl" <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
val = [r for r in recs if "val_loss" in r]
zs = [r for r in recs if "zeroshot_top1" in r]
print("   val epochs", [r["epoch"] for r in val], "steps", [r["step"] for r in val],
      "zero-shot epochs", [r["epoch"] for r in zs])
ok = [r["epoch"] for r in val] == [2, 3] and [r["step"] for r in val] == [8, 12]
ok = ok and [r["epoch"] for r in zs] == [1, 2, 3]
for r in val:
    print("   ", {k: round(v, 4) for k, v in r.items() if k.startswith("val_")})
    losses = [r["val_loss"], r["val_contrastive_loss"], r["val_caption_loss"]]
    ok = ok and all(math.isfinite(x) and x > 0 for x in losses)
    # the training weights: contrastive 1, caption 2
    ok = ok and abs(r["val_loss"] - (r["val_contrastive_loss"] + 2 * r["val_caption_loss"])) < 1e-9 * r["val_loss"]
    ok = ok and r["val_samples"] == 40 and r["val_images"] == 40
    for d in ("image_to_text", "text_to_image"):
        rk = [r[f"val_{d}_R@{k}"] for k in (1, 5, 10)]
        ok = ok and all(0 <= x <= 1 for x in rk) and rk[0] <= rk[1] <= rk[2]
        ok = ok and 1 <= r[f"val_{d}_median_rank"] <= 40 and 1 <= r[f"val_{d}_mean_rank"] <= 40
sys.exit(0 if ok else 1)
PY

# 3. The end-of-training val record against coca-eval retrieval of the final checkpoint on the
# same data, same ranks and batch size (so the features are computed identically).
ckpt="$work/logs/val/checkpoints/$(cat "$work/logs/val/checkpoints/latest")"
"${mpirun_[@]}" "$build/coca-eval" retrieval --model-config "$work/fx/model.json" --weights "$ckpt/model.safetensors" \
  --data "$work/fx/uneven" --batch-size 8 --output "$work/retrieval.json" >"$work/retrieval.log" 2>&1
check "coca-eval retrieval on the final checkpoint exits 0" test $? -eq 0
check "final val R@1/5/10 and ranks equal coca-eval retrieval's" python3 - "$work/logs/val/metrics.jsonl" "$work/retrieval.json" <<'PY'
import json, sys
val = [json.loads(l) for l in open(sys.argv[1]) if "val_loss" in l][-1]
ret = json.load(open(sys.argv[2]))
ok = True
for d in ("image_to_text", "text_to_image"):
    for k, rk in (("R@1", "R@1"), ("R@5", "R@5"), ("R@10", "R@10"), ("mean_rank", "mean_rank"), ("median_rank", "median_rank")):
        a, b = val[f"val_{d}_{k}"], ret[d][rk]
        print(f"   {d} {k}: val {a} retrieval {b}")
        ok = ok and abs(a - b) < 1e-12
sys.exit(0 if ok else 1)
PY

exit $fail
