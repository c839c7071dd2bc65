#!/usr/bin/env bash
# coca-shard under mpirun: 3 ranks must produce the same samples, in the same order, with the
# same skip report as one process. Usage: mpi_shard_test.sh COCA_SHARD MPI_SHARD_TOOL
set -euo pipefail
shard=$1 tool=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tool" make "$tmp"
common=(--format csv --input "$tmp/list.tsv" --images-root "$tmp/imgs" --image-format raw --image-size 8 --samples-per-shard 4 --quiet)
"$shard" "${common[@]}" --output "$tmp/one" > /dev/null
mpirun --allow-run-as-root --oversubscribe -np 3 "$shard" "${common[@]}" --output "$tmp/three" > /dev/null
"$tool" compare "$tmp/one" "$tmp/three"
