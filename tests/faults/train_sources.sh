#!/usr/bin/env bash
# Training data that grows or comes from several sets:
#   1. a set grown by `coca-shard --append` (tars appended to the fixture's set): a checkpoint of
#      the set before is refused on the grown set, in one line naming --train-data, and trains on
#      with --resume-new-data (a fresh epoch over the grown set);
#   2. --train-data 'A::B' with --train-data-upsampling-factors 1::4 and --dataset-resampled:
#      trains, logs the samples each source gave and writes them to metrics.jsonl (they add up
#      to the samples seen); the factors without --dataset-resampled, or of the wrong count,
#      are one-line errors.
source "$(dirname "$0")/lib.sh"
make_fixture
wds_tool="$build/tests/data/wds_tool"
if [ ! -x "$wds_tool" ] || [ ! -x "$coca_shard" ]; then skip "wds_tool or coca-shard not built"; finish; fi
logs="$work/logs"
common=(--model-config "$fx/model.json" --batch-size 4 --workers 1 --warmup 2 --log-every-n-steps 1
        --save-frequency 0 --epochs 2 --logs "$logs" --lr-scheduler const)
cp -r "$fx/train" "$work/grown"

section "a set grown by --append"
run_timed "2 steps on the set" "$work/base.log" \
  "$train" --train-data "$work/grown" "${common[@]}" --name "$tag-base" --max-steps 2 --save-every-n-steps 2
check "the first run exits 0 with step_000002" test $rc -eq 0 -a -d "$logs/$tag-base/checkpoints/step_000002"
"$wds_tool" make "$work/tars" 2 40 --clean --side 40 >/dev/null
run_timed "coca-shard --append" "$work/append.log" \
  "$coca_shard" --format wds --input "$work/tars/{00000..00001}.tar" --output "$work/grown" --append \
  --image-format raw --image-size 32 --chunk-images 8 --tokenizer "$fx/bpe.txt.gz" --context-length 16 --quiet
check "--append to the fixture's set exits 0" test $rc -eq 0
check "the grown index lists the old and the new samples" python3 -c 'import json,sys
a, b = (json.load(open(p + "/index.json")) for p in sys.argv[1:])
sys.exit(b["total_samples"] != a["total_samples"] + 80 or b["shards"][:len(a["shards"])] != a["shards"])' \
  "$fx/train" "$work/grown"
one_line_error "resuming on the grown set is refused" "--train-data (sha256 of index.json)" "" \
  "$train" --train-data "$work/grown" "${common[@]}" --name "$tag-r1" --resume "$logs/$tag-base/checkpoints/step_000002" \
  --max-steps 4
run_timed "resume on the grown set, --resume-new-data" "$work/new.log" \
  "$train" --train-data "$work/grown" "${common[@]}" --name "$tag-new" --resume "$logs/$tag-base/checkpoints/step_000002" \
  --max-steps 4 --resume-new-data
check "--resume-new-data trains on over the grown set (exit $rc)" test $rc -eq 0
check "it starts the epoch afresh" grep -q -- "--resume-new-data: epoch .* starts afresh" "$work/new.log"

section "two sources, upsampling factors"
run_timed "A::B 1::4 resampled" "$work/two.log" \
  "$train" --train-data "$fx/train::$work/grown" --train-data-upsampling-factors 1::4 --dataset-resampled \
  --train-num-samples 64 "${common[@]}" --name "$tag-two" --max-steps 6
check "A::B with factors exits 0" test $rc -eq 0
check "the log gives the samples by source" grep -q "samples by source since the start of this run: {" "$work/two.log"
check "metrics.jsonl: samples_by_source of both, adding up to samples_seen" python3 -c 'import json,sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = [r["samples_by_source"] for r in rows if "samples_by_source" in r]
seen = [r["samples_seen"] for r in rows if "samples_seen" in r]
sys.exit(not by or len(by[-1]) != 2 or sum(by[-1].values()) != seen[-1] or min(by[-1].values()) == 0)' \
  "$logs/$tag-two/metrics.jsonl"
one_line_error "factors without --dataset-resampled" "--dataset-resampled" 300 \
  "$train" --train-data "$fx/train::$work/grown" --train-data-upsampling-factors 1::4 "${common[@]}" --name "$tag-r2"
one_line_error "three factors for two sources" "3 factors for 2" 300 \
  "$train" --train-data "$fx/train::$work/grown" --train-data-upsampling-factors 1::4::2 --dataset-resampled \
  "${common[@]}" --name "$tag-r3"
finish
