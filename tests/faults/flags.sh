#!/usr/bin/env bash
# Bad command lines and bad files (label faults): each must give exactly one line on stderr
# naming the flag (or the file), a non-zero exit, and no crash (no signal, no core dump).
#   coca-train: out-of-range numbers, unknown values, missing data or model, invalid JSON, a
#   classification set given to --val-data (names --zeroshot-data) and the reverse, an
#   unknown flag.
#   coca-eval zeroshot: weights of another model, a truncated safetensors file, a missing file,
#   a PyTorch checkpoint of another model, a truncated PyTorch archive (the line also stays
#   shorter than 600 characters besides the file path; 650 for a mismatch, which also says how to list them all).
# usage: flags.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
make_fixture
logs="$work/logs"
cd "$work" || exit 1  # a core file, if any, would land here

section "coca-train: bad command lines"
echo '{"embed_dim": 32, "vision_cfg": {' >"$work/broken.json"
base=(--train-data "$fx/train" --model-config "$fx/model.json" --logs "$logs" --name "$tag-flags" --max-steps 1)
nomodel=(--train-data "$fx/train" --logs "$logs" --name "$tag-flags" --max-steps 1)
one_line_error "--max-steps -5" "--max-steps" "" "$train" --train-data "$fx/train" --model-config "$fx/model.json" --max-steps -5
one_line_error "--seed -1" "--seed" "" "$train" "${base[@]}" --seed -1
one_line_error "--batch-size 0" "--batch-size" "" "$train" "${base[@]}" --batch-size 0
one_line_error "--epochs 0" "--epochs" "" "$train" "${base[@]}" --epochs 0
one_line_error "--lr -1" "--lr" "" "$train" "${base[@]}" --lr -1
one_line_error "--device tpu" "--device" "" "$train" "${base[@]}" --device tpu
one_line_error "--precision fp8" "--precision" "" "$train" "${base[@]}" --precision fp8
one_line_error "--train-data /nonexistent" "--train-data|/nonexistent" "" \
  "$train" --train-data /nonexistent --model-config "$fx/model.json" --logs "$logs"
one_line_error "--model nosuchmodel" "--model|nosuchmodel" "" "$train" "${nomodel[@]}" --model nosuchmodel
one_line_error "--model-config with invalid JSON" "$work/broken.json" "" "$train" "${nomodel[@]}" --model-config "$work/broken.json"
one_line_error "--aug-scale 2,3" "--aug-scale" "" "$train" "${base[@]}" --aug-scale 2,3
one_line_error "--val-data on a classification set" "--zeroshot-data" "" "$train" "${base[@]}" --val-data "$fx/eval"
one_line_error "--zeroshot-data on a captioned set" "--val-data" "" "$train" "${base[@]}" --zeroshot-data "$fx/train"
one_line_error "--zeroshot-frequency without --zeroshot-data" "--zeroshot-data" "" "$train" "${base[@]}" --zeroshot-frequency 1
one_line_error "unknown flag --no-such-flag" "--no-such-flag" "" "$train" "${base[@]}" --no-such-flag 1
check "no core file was written" test -z "$(find "$work" -maxdepth 1 -name 'core*' -print -quit)"

section "coca-eval zeroshot: bad weight files"
run_timed "one training step, for weights" "$work/weights.log" \
  "$train" "${base[@]}" --batch-size 8 --workers 1 --save-every-n-steps 1
weights="$logs/$tag-flags/checkpoints/step_000001/model.safetensors"
check "the fixture model's weights exist" test -s "$weights"
# The same model with a vision tower 48 wide: every vision tensor mismatches.
python3 - "$fx/model.json" "$work/model48.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["vision_cfg"]["width"] = 48
json.dump(cfg, open(sys.argv[2], "w"))
PY
head -c 1000 "$weights" >"$work/truncated.safetensors"
printf 'a photo of a {}\n' >"$work/templates.txt"
zs=(zeroshot --data "$fx/eval" --templates "$work/templates.txt" --batch-size 16)
one_line_error "weights of a 48-wide model config" "$weights" 650 \
  "$coca_eval" "${zs[@]}" --model-config "$work/model48.json" --weights "$weights"
one_line_error "truncated safetensors" "$work/truncated.safetensors" 600 \
  "$coca_eval" "${zs[@]}" --model-config "$fx/model.json" --weights "$work/truncated.safetensors"
one_line_error "nonexistent weights" "$work/missing.safetensors" 600 \
  "$coca_eval" "${zs[@]}" --model-config "$fx/model.json" --weights "$work/missing.safetensors"
# PyTorch zip checkpoints (torch.save): another model's training checkpoint, a truncated archive.
# (no length bound: its names are the micro model's long text-tower ones)
one_line_error "torch .pt of another model config" "$repo/tests/reference/golden/torch/micro.pt" "" \
  "$coca_eval" "${zs[@]}" --model-config "$fx/model.json" --weights "$repo/tests/reference/golden/torch/micro.pt"
one_line_error "truncated torch archive" "$repo/tests/reference/golden/torch/truncated.bin" 600 \
  "$coca_eval" "${zs[@]}" --model-config "$fx/model.json" --weights "$repo/tests/reference/golden/torch/truncated.bin"
check "no core file was written" test -z "$(find "$work" -maxdepth 1 -name 'core*' -print -quit)"
finish
