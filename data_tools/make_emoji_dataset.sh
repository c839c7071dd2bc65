#!/usr/bin/env bash
# Builds the project's small real dataset from the emoji-datasource npm packages:
#   <outdir>/train          shards: apple, google and facebook 64px emoji with captions made
#                           from their names, tokens from the BPE vocabulary below (L = 32)
#   <outdir>/twitter_eval   held-out classification shards: twitter's images, classes = names
#   <outdir>/bpe_emoji_4096.txt.gz   BPE vocabulary (4096, as coca_tiny) trained on the captions
# With HOLD_OUT=apple|google|facebook, also the validation split, for choosing a recipe without
# looking at twitter: <outdir>/holdout_<vendor>/train (the two other vendors) and
# <outdir>/holdout_<vendor>/eval (the held-out vendor's images, classes = names), same vocabulary.
# Only `npm pack` touches the network. Idempotent: finished steps are kept (FORCE=1 redoes
# them). Usage: data_tools/make_emoji_dataset.sh <outdir>   (env: COCA_BIN, THREADS, NP, HOLD_OUT)
set -euo pipefail

out=${1:?usage: make_emoji_dataset.sh <outdir>}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${COCA_BIN:-$here/../build/data_tools}
threads=${THREADS:-$(nproc)}
version=16.0.0
force=${FORCE:-0}
for tool in coca-shard coca-tokenizer; do
  [[ -x $bin/$tool ]] || { echo "make_emoji_dataset: $bin/$tool not found; build first (or set COCA_BIN)" >&2; exit 1; }
done
mkdir -p "$out/npm" "$out/work"
out=$(cd "$out" && pwd)

# 1. Fetch and unpack the four packages (pinned version).
for set in apple google facebook twitter; do
  pkg=emoji-datasource-$set-$version.tgz
  if [[ ! -f $out/npm/$pkg ]]; then
    echo "fetching $pkg"
    (cd "$out/npm" && npm pack --silent "emoji-datasource-$set@$version" > /dev/null)
  fi
  if [[ ! -f $out/npm/$set/package/emoji.json ]]; then
    rm -rf "$out/npm/$set.partial" && mkdir -p "$out/npm/$set.partial"
    tar xzf "$out/npm/$pkg" -C "$out/npm/$set.partial"
    rm -rf "$out/npm/$set" && mv "$out/npm/$set.partial" "$out/npm/$set"
  fi
done

# 2. Captions, the training table and the held-out folder layout.
if [[ $force == 1 || ! -f $out/work/train.tsv || ! -f $out/work/twitter_classnames.txt ]]; then
  rm -rf "$out/work/twitter"
  python3 "$here/emoji_captions.py" "$out/npm" "$out/work"
fi

# 3. The BPE vocabulary, trained on the training captions.
vocab=$out/bpe_emoji_4096.txt.gz
if [[ $force == 1 || ! -f $vocab ]]; then
  "$bin/coca-tokenizer" train --input "$out/work/train_captions.txt" --vocab-size 4096 --output "$vocab" --quiet
fi

# 4. Shards. NP > 1 runs coca-shard under mpirun.
launch=()
if [[ ${NP:-1} -gt 1 ]]; then launch=(mpirun --allow-run-as-root --oversubscribe -np "$NP"); fi
# train.tsv lists the emoji by vendor and category; the shards hold them shuffled (seed 0), so
# that every batch mixes vendors and categories (the loader's buffer mixes only ~2 shards).
# Sets made before the shuffle (no shuffle_seed in the index) are rebuilt.
if [[ $force == 1 || ! -f $out/train/index.json ]] || ! grep -q '"shuffle_seed"' "$out/train/index.json"; then
  "${launch[@]}" "$bin/coca-shard" --format csv --input "$out/work/train.tsv" --images-root "$out/npm" \
    --output "$out/train" --image-format raw --image-size 64 --samples-per-shard 500 --chunk-images 16 --shuffle-seed 0 \
    --tokenizer "$vocab" --context-length 32 --threads "$threads" --overwrite --quiet
fi
if [[ $force == 1 || ! -f $out/twitter_eval/index.json ]]; then
  "${launch[@]}" "$bin/coca-shard" --format folder --input "$out/work/twitter" \
    --classnames "$out/work/twitter_classnames.txt" --output "$out/twitter_eval" --image-format raw --image-size 64 \
    --samples-per-shard 1000 --chunk-images 16 --tokenizer "$vocab" --context-length 32 \
    --threads "$threads" --overwrite --quiet
fi

# 5. The validation split: the held-out vendor plays twitter's part.
hold=${HOLD_OUT:-}
if [[ -n $hold ]]; then
  [[ $hold == apple || $hold == google || $hold == facebook ]] || \
    { echo "make_emoji_dataset: HOLD_OUT must be apple, google or facebook, got '$hold'" >&2; exit 1; }
  hw=$out/work/holdout_$hold hd=$out/holdout_$hold
  if [[ $force == 1 || ! -f $hw/train.tsv || ! -f $hw/${hold}_classnames.txt ]]; then
    rm -rf "$hw/$hold"
    python3 "$here/emoji_captions.py" "$out/npm" "$hw" --hold-out "$hold"
  fi
  if [[ $force == 1 || ! -f $hd/train/index.json ]]; then
    "${launch[@]}" "$bin/coca-shard" --format csv --input "$hw/train.tsv" --images-root "$out/npm" \
      --output "$hd/train" --image-format raw --image-size 64 --samples-per-shard 500 --chunk-images 16 --shuffle-seed 0 \
      --tokenizer "$vocab" --context-length 32 --threads "$threads" --overwrite --quiet
  fi
  if [[ $force == 1 || ! -f $hd/eval/index.json ]]; then
    "${launch[@]}" "$bin/coca-shard" --format folder --input "$hw/$hold" \
      --classnames "$hw/${hold}_classnames.txt" --output "$hd/eval" --image-format raw --image-size 64 \
      --samples-per-shard 1000 --chunk-images 16 --tokenizer "$vocab" --context-length 32 \
      --threads "$threads" --overwrite --quiet
  fi
fi

# 6. Counts.
python3 - "$out" "$hold" <<'PY'
import json, sys, collections
out, hold = sys.argv[1], sys.argv[2]
def load(p):
    with open(p) as f:
        return json.load(f)
tr, ev = load(f"{out}/train/index.json"), load(f"{out}/twitter_eval/index.json")
trr, evr = load(f"{out}/train/report.json"), load(f"{out}/twitter_eval/report.json")
per = collections.Counter()
with open(f"{out}/work/train.tsv", encoding="utf-8") as f:
    next(f)
    for line in f:
        per[line.split("/", 1)[0]] += 1
print(f"train: {tr['total_samples']} samples in {len(tr['shards'])} shards "
      f"(listed per source: {dict(per)}), skipped {trr['skipped_by_reason'] or 'none'}")
print(f"twitter_eval: {ev['total_samples']} images, {ev['num_classes']} classes in {len(ev['shards'])} shards, "
      f"skipped {evr['skipped_by_reason'] or 'none'}")
if hold:
    ht, he = load(f"{out}/holdout_{hold}/train/index.json"), load(f"{out}/holdout_{hold}/eval/index.json")
    print(f"validation split: holdout_{hold}/train {ht['total_samples']} samples, "
          f"holdout_{hold}/eval {he['total_samples']} images, {he['num_classes']} classes")
print(f"vocabulary: {out}/bpe_emoji_4096.txt.gz (vocab_size {tr['tokenizer']['vocab_size']}, context 32)")
PY
