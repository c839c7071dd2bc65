#!/usr/bin/env bash
# OpenCLIP's CLIP family end to end (label mpi): a CLIP config (no multimodal_cfg) trains on
# two ranks with the contrastive loss only and the loss goes down (that N ranks compute one
# process's step is tests/dist's ClipOneStepAndAccumulationFloat64); the checkpoint holds
# OpenCLIP CLIP's tensor names (the text tower at the top level, no decoder); zero-shot with it
# beats chance; a
# WebDataset tar set converted by coca-shard trains; captioning a CLIP is refused in one line.
# usage: test_train_clip.sh BUILD_DIR
. "$(dirname "$0")/lib.sh" coca-train-clip-test "$1"

# The fixture's micro CoCa without its decoder and pooler: OpenCLIP's CLIP layout.
python3 - "$work/fx/model.json" "$work/clip.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
del c["multimodal_cfg"]
for k in ("attentional_pool", "attn_pooler_queries", "attn_pooler_heads"):
    c["vision_cfg"].pop(k, None)
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
exited_ok() {  # exited_ok DESCRIPTION LOG RC: a check, with the log's tail when it failed
  check "$1" test "$3" -eq 0
  [ "$3" -eq 0 ] || tail -5 "$2"
}
common=(--model-config "$work/clip.json" --workers 1 --logs "$work/logs" --warmup 2 --lr 2e-3
        --log-every-n-steps 1 --save-frequency 0 --seed 3)

# 1. Two ranks, loss goes down, and only the contrastive loss is trained.
"${mpirun_[@]}" "$train" --train-data "$work/fx/train" "${common[@]}" --batch-size 8 --name down --epochs 6 >"$work/down.log" 2>&1
exited_ok "two-rank CLIP training exits 0" "$work/down.log" $?
check "CLIP loss goes down and is the contrastive loss" python3 - "$work/logs/down/metrics.jsonl" <<'PY'
import json, sys
rows = [r for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
losses = [r["loss"] for r in rows]
print("losses", [round(x, 3) for x in losses[:3]], "...", [round(x, 3) for x in losses[-3:]])
same = all(abs(r["loss"] - r["contrastive_loss"]) <= 1e-6 * max(1, abs(r["loss"])) for r in rows)
no_caption = all(r.get("caption_loss", 0) == 0 for r in rows)
sys.exit(0 if len(losses) >= 6 and sum(losses[-3:]) < 0.8 * sum(losses[:3]) and same and no_caption else 1)
PY
ckpt="$work/logs/down/checkpoints/$(cat "$work/logs/down/checkpoints/latest")"
check "the checkpoint holds OpenCLIP CLIP's names" python3 - "$ckpt/model.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
names = [k for k in json.loads(raw[8:8 + n]) if k != "__metadata__"]
need = ["positional_embedding", "text_projection", "logit_scale", "token_embedding.weight", "ln_final.weight",
        "transformer.resblocks.0.attn.in_proj_weight", "visual.proj", "visual.ln_post.weight"]
bad = [k for k in names if k.startswith(("text.", "text_decoder.", "visual.attn_pool."))]
missing = [k for k in need if k not in names]
print(len(names), "tensors; missing", missing, "unexpected", bad[:3])
sys.exit(0 if not missing and not bad else 1)
PY

# 2. Zero-shot with the trained CLIP: far above chance (1/8), as for CoCa in test_train.sh.
printf 'a photo of a {} on a grey background\n' > "$work/templates.txt"
"$build/coca-eval" zeroshot --model-config "$work/clip.json" --weights "$ckpt/model.safetensors" \
  --data "$work/fx/eval" --templates "$work/templates.txt" --batch-size 16 --output "$work/zs.json" >"$work/zs.log" 2>&1
exited_ok "CLIP zero-shot exits 0" "$work/zs.log" $?
check "CLIP zero-shot far above chance" python3 - "$work/zs.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("zero-shot top1", r["top1"], "top5", r["top5"])
sys.exit(0 if r["images"] == 64 and r["top1"] >= 0.5 else 1)
PY

# 3. Captioning needs a decoder: one line naming the model.
"$build/coca-eval" caption --model-config "$work/clip.json" --weights "$ckpt/model.safetensors" \
  --data "$work/fx/eval" --tokenizer "$work/fx/bpe.txt.gz" --output "$work/cap.json" >/dev/null 2>"$work/cap.err"
rc=$?
check "coca-eval caption refuses a CLIP in one line ($(cat "$work/cap.err"))" \
  bash -c "[ $rc -ne 0 ] && [ \$(grep -c '' '$work/cap.err') -eq 1 ] && grep -q 'is a CLIP' '$work/cap.err'"

# 4. A WebDataset set converted by coca-shard (tokenized at load time with the fixture's tokenizer).
"$build/tests/data/wds_tool" make "$work/tars" 2 24 --side 40 >/dev/null &&
  "$build/data_tools/coca-shard" --format wds --input "$work/tars/{00000..00001}.tar" --output "$work/wds" \
    --samples-per-shard 16 --max-side 40 --quiet >"$work/shard.log" 2>&1
exited_ok "coca-shard converts the WebDataset tars" "$work/shard.log" $?
"${mpirun_[@]}" "$train" --train-data "$work/wds" --tokenizer "$work/fx/bpe.txt.gz" "${common[@]}" \
  --batch-size 8 --name wds --epochs 1 >"$work/wds.log" 2>&1
exited_ok "CLIP trains on the WebDataset-converted set" "$work/wds.log" $?
check "it logged finite losses" python3 - "$work/logs/wds/metrics.jsonl" <<'PY'
import json, math, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
print("losses", [round(x, 3) for x in losses])
sys.exit(0 if losses and all(math.isfinite(x) for x in losses) else 1)
PY
exit $fail
