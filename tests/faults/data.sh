#!/usr/bin/env bash
# Damaged data (label faults).
#   Training shards damaged five ways (truncated, missing, mis-counted in index.json, 4 KB of
#   garbage inside the image data, an out-of-range token id): on 2 ranks each fails within 60 s,
#   non-zero, with an error line naming the shard file; with --skip-bad-shards each trains to
#   the end with a warning naming the shard.
#   coca-shard inputs damaged four ways (a CSV quote never closed, a zero-byte image, a truncated
#   PNG, an HTML page named .jpg): each skipped and counted under its reason in report.json, and
#   considered = written + skipped.
# usage: data.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
make_fixture
logs="$work/logs"
bad=shard-00001.h5
common=(--model-config "$fx/model.json" --batch-size 8 --workers 1 --warmup 2 --log-every-n-steps 1
        --save-frequency 0 --epochs 1 --logs "$logs")
set_token="${COCA_FAULTS_SET_TOKEN:-$build/tests/faults/set_shard_token}"

# Each damage: a copy of the training set with shard 1 damaged in $1's way.
damage() {  # damage KIND DIR
  local kind=$1 dir=$2 f="$2/$bad"
  cp -r "$fx/train" "$dir"
  case $kind in
    truncated) truncate -s $(( $(stat -c %s "$f") / 2 )) "$f" ;;
    missing) rm "$f" ;;
    miscounted)  # index.json says 60 samples where the shard holds 64 (and the total agrees)
      python3 - "$dir/index.json" <<'PY' ;;
import json, sys
p = sys.argv[1]
ix = json.load(open(p))
ix["shards"][1]["samples"] -= 4
ix["total_samples"] = sum(s["samples"] for s in ix["shards"])
json.dump(ix, open(p, "w"), indent=2)
PY
    garbage)  # 4 KB of noise over the middle of the file: image chunks
      dd if=/dev/urandom of="$f" bs=4096 seek=$(( $(stat -c %s "$f") / 2 / 4096 )) count=1 conv=notrunc status=none ;;
    token)  # one id past the vocabulary, written through HDF5 (the chunk checksum stays right)
      local vocab; vocab=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokenizer"]["vocab_size"])' "$dir/index.json")
      "$set_token" "$f" 5 1 $((vocab + 100)) ;;
  esac
}

section "damaged training shards, 2 ranks"
for kind in truncated missing miscounted garbage token; do
  dir="$work/data-$kind"
  if [ $kind = token ] && [ ! -x "$set_token" ]; then
    skip "out-of-range token: $set_token is not built"; continue
  fi
  damage $kind "$dir" || { check "$kind: damage the shard" false; continue; }
  exits_within 60 "$kind" "$work/$kind.log" mpi 2 "$train" --train-data "$dir" "${common[@]}" --name "$tag-$kind"
  naming=$(grep -cF "$bad" "$work/$kind.log")
  check "$kind: exits non-zero" test $rc -ne 0
  check "$kind: an error line names the shard file ($naming line(s), at most one per rank)" \
    test "$naming" -ge 1 -a "$naming" -le 2
  grep -F "$bad" "$work/$kind.log" | head -2 | cut -c1-300 | sed 's/^/   | /'
  [ "$naming" -eq 0 ] && show_log "$work/$kind.log" 6

  exits_within 120 "$kind, --skip-bad-shards" "$work/$kind-skip.log" \
    mpi 2 "$train" --train-data "$dir" "${common[@]}" --name "$tag-$kind-skip" --skip-bad-shards
  check_ran_to_end "$kind, --skip-bad-shards" "$work/$kind-skip.log" "$logs/$tag-$kind-skip/metrics.jsonl"
  check "$kind, --skip-bad-shards: a warning names the shard file" \
    grep -qiE "warning.*$bad|$bad.*warning|skip.*$bad" "$work/$kind-skip.log"
  grep -iE "warning|skip" "$work/$kind-skip.log" | head -2 | cut -c1-300 | sed 's/^/   | /'
  [ $rc -ne 0 ] && show_log "$work/$kind-skip.log" 6
done

# ---- coca-shard ----------------------------------------------------------------------------------
section "coca-shard: damaged inputs are skipped and counted by reason"
raw="$work/raw"
mkdir -p "$raw"
python3 - "$raw" <<'PY'
import os, random, struct, sys, zlib
def png(w, h, seed):
    rnd = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rnd.randrange(256) for _ in range(w * 3)) for _ in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
d = sys.argv[1]
open(os.path.join(d, "good1.png"), "wb").write(png(24, 24, 1))
open(os.path.join(d, "good2.png"), "wb").write(png(24, 24, 2))
open(os.path.join(d, "zero.png"), "wb").close()
cut = png(64, 64, 3)
open(os.path.join(d, "cut.png"), "wb").write(cut[: len(cut) // 2])
open(os.path.join(d, "page.jpg"), "w").write("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                                             "<body><h1>Not Found</h1></body></html>\n")
with open(os.path.join(d, "train.tsv"), "w") as f:
    f.write("filepath\ttitle\n")
    f.write("good1.png\ta red square\n")
    f.write("good2.png\ta blue stripe\n")
    f.write("zero.png\tzero bytes\n")
    f.write("cut.png\ta png cut in half\n")
    f.write("page.jpg\tan html page named jpg\n")
    f.write('good1.png\t"a quote that never closes\n')
PY
run_timed "coca-shard on damaged inputs" "$work/shard.log" \
  "$coca_shard" --format csv --input "$raw/train.tsv" --images-root "$raw" --output "$work/sharded" --image-format raw --image-size 16 --quiet
check "coca-shard exits 0" test $rc -eq 0
[ $rc -ne 0 ] && show_log "$work/shard.log"
report="$work/sharded/report.json"
for want in empty_file:1 truncated_image:1 not_an_image:1 unclosed_quote:1; do
  reason=${want%:*} n=${want#*:}
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["skipped_by_reason"].get(sys.argv[2], 0))' \
        "$report" "$reason" 2>/dev/null)
  check "coca-shard: $reason counted $n (got ${got:-no report})" test "${got:-x}" = "$n"
done
check "coca-shard: 2 written, considered = written + skipped" python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
by = sum(r["skipped_by_reason"].values())
print("   considered", r["considered"], "written", r["written"], "skipped", r["skipped"], "by reason", by)
sys.exit(0 if r["written"] == 2 and r["skipped"] == by and r["considered"] == r["written"] + by else 1)
PY
finish
