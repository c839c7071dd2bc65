#!/usr/bin/env bash
# coca-shard on WebDataset tars: brace patterns and pipe: inputs give the samples of the plain
# file list; 1, 2 and 4 ranks give the same samples (keys, image bytes, captions) and the same
# index; --append adds tars (the set then holds exactly the samples of one run over all the
# tars) and refuses other image settings, another tokenizer, a tar already in the set, and a
# missing set, each in one line. Usage: wds_shard_test.sh COCA_SHARD WDS_TOOL
set -euo pipefail
shard=$1 tool=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {  # check DESC CMD...
  local what=$1; shift
  if "$@"; then echo "PASS $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
refused() {  # refused WORDS CMD...: exit 1, one stderr line holding WORDS
  local words=$1; shift
  local rc=0
  "$@" >/dev/null 2>"$tmp/err" || rc=$?
  [ $rc -ge 1 ] && [ $rc -le 127 ] && [ "$(grep -c "" "$tmp/err")" = 1 ] && grep -qF -- "$words" "$tmp/err" ||
    { echo "   got rc $rc: $(cat "$tmp/err")"; return 1; }
}
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
"$tool" make "$tmp/in" 7 40
common=(--samples-per-shard 16 --max-side 16 --quiet)
dump() { "$tool" dump "$1" | sort; }

"$shard" --format wds --input "$tmp"/in/0000{0,1,2,3,4,5,6}.tar --output "$tmp/files" "${common[@]}" >/dev/null
dump "$tmp/files" >"$tmp/files.txt"
check "a plain file list converts ($(wc -l <"$tmp/files.txt") samples)" test "$(wc -l <"$tmp/files.txt")" -gt 200
"$shard" --format wds --input "$tmp/in/{00000..00006}.tar" --output "$tmp/braces" "${common[@]}" >/dev/null
check "'{00000..00006}.tar' is the same list" cmp -s "$tmp/files.txt" <(dump "$tmp/braces")
"$shard" --format wds --input "pipe:cat $tmp/in/{00000..00003}.tar" "pipe:cat $tmp/in/00004.tar" \
  "$tmp/in/{00005,00006}.tar" --output "$tmp/pipes" "${common[@]}" >/dev/null
check "pipe: inputs give the same samples" cmp -s "$tmp/files.txt" <(dump "$tmp/pipes")
check "pipe: keys name the tar" grep -q "^00001.tar/" <("$tool" dump "$tmp/pipes")
for np in 2 4; do
  "${mpirun[@]}" -np $np "$shard" --format wds --input "$tmp/in/{00000..00006}.tar" --output "$tmp/np$np" \
    "${common[@]}" >/dev/null
  check "$np ranks: the same samples as 1" cmp -s "$tmp/files.txt" <(dump "$tmp/np$np")
  check "$np ranks: the same shards and counts as 1" python3 -c 'import json,sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(a["shards"] != b["shards"] or a["extra"]["skipped_by_reason"] != b["extra"]["skipped_by_reason"])' \
    "$tmp/braces/index.json" "$tmp/np$np/index.json"
done
check "a failing pipe: command is one error line naming it" \
  refused "pipe:exit 3" "$shard" --format wds --input "pipe:exit 3" --output "$tmp/failed" "${common[@]}"

# --append: the first 4 tars, then the other 3 on 2 ranks.
"$shard" --format wds --input "$tmp/in/{00000..00003}.tar" --output "$tmp/grown" "${common[@]}" >/dev/null
"${mpirun[@]}" -np 2 "$shard" --format wds --input "$tmp/in/{00004..00006}.tar" --output "$tmp/grown" --append \
  "${common[@]}" >/dev/null
check "--append: old and new samples, those of one run over every tar" cmp -s "$tmp/files.txt" <(dump "$tmp/grown")
check "--append: the index lists old and new inputs" python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))
sys.exit(len(j["source"]["inputs"]) != 7 or j["num_shards"] != len(j["shards"]) or len(j["extra"]["appended"]) != 1)' \
  "$tmp/grown/index.json"
check "--append: other image settings refused, naming the flag" \
  refused "--max-side 16, this run has 32" "$shard" --format wds --input "$tmp/in/00000.tar" --output "$tmp/grown" \
  --append --samples-per-shard 16 --max-side 32 --quiet
check "--append: raw images refused, naming the flag" \
  refused "--image-format" "$shard" --format wds --input "$tmp/in/00000.tar" --output "$tmp/grown" --append \
  --image-format raw --image-size 16 --quiet
printf '#version: 0.2\nr e\n' | gzip >"$tmp/bpe.txt.gz"
check "--append: another tokenizer refused" \
  refused "tokenizer" "$shard" --format wds --input "$tmp/in/00000.tar" --output "$tmp/grown" --append \
  --tokenizer "$tmp/bpe.txt.gz" "${common[@]}"
check "--append: a tar already in the set refused, naming it" \
  refused "00002.tar is already in" "$shard" --format wds --input "$tmp/in/00002.tar" --output "$tmp/grown" --append \
  "${common[@]}"
check "--append: no set there" \
  refused "holds no shard set" "$shard" --format wds --input "$tmp/in/00002.tar" --output "$tmp/none" --append \
  "${common[@]}"
check "the refusals left the set as it was" cmp -s "$tmp/files.txt" <(dump "$tmp/grown")
echo "wds_shard_test: $fails failed"
exit $((fails > 0))
