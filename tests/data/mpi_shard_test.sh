#!/usr/bin/env bash
# coca-shard under mpirun: 3 ranks must produce the same samples, in the same order, with the
# same skip report as one process; so must 3 ranks sharing the table in blocks of 7 rows, and a
# conversion continued after parts of it were lost. Usage: mpi_shard_test.sh COCA_SHARD MPI_SHARD_TOOL
set -euo pipefail
shard=$1 tool=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tool" make "$tmp"
common=(--format csv --input "$tmp/list.tsv" --images-root "$tmp/imgs" --image-format raw --image-size 8 --samples-per-shard 4 --quiet)
"$shard" "${common[@]}" --output "$tmp/one" > /dev/null
mpirun --allow-run-as-root --oversubscribe -np 3 "$shard" "${common[@]}" --output "$tmp/three" > /dev/null
"$tool" compare "$tmp/one" "$tmp/three"
# The table in blocks of 7 rows (6 parts, shared by the 3 ranks): the same samples again.
mpirun --allow-run-as-root --oversubscribe -np 3 "$shard" "${common[@]}" --rows-per-part 7 --output "$tmp/parts" > /dev/null
"$tool" compare "$tmp/one" "$tmp/parts"
# A conversion that stopped after some parts (records of parts 2 and 4 and their shards gone, a
# temporary left, no index) continues with the same command: the same samples again.
python3 - "$tmp/parts" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
for p in (2, 4):
    os.remove(os.path.join(d, ".coca-shard", "part-%05d.json" % p))
    for f in glob.glob(os.path.join(d, "shard-%05d-*.h5" % p)):
        os.remove(f)
open(os.path.join(d, ".tmp-p00002-shard-00000.h5"), "w").write("half")
os.remove(os.path.join(d, "index.json"))
s = json.load(open(os.path.join(d, ".coca-shard", "settings.json")))
s["finished"] = False
json.dump(s, open(os.path.join(d, ".coca-shard", "settings.json"), "w"))
PY
mpirun --allow-run-as-root --oversubscribe -np 3 "$shard" "${common[@]}" --rows-per-part 7 --output "$tmp/parts" > /dev/null
"$tool" compare "$tmp/one" "$tmp/parts"
