#!/usr/bin/env bash
# coca-shard throughput and memory on WebDataset tars of synthetic JPEGs (not a ctest test: it
# needs minutes and a quiet machine). For each size (samples, in tars of 1,000) and 1, 2 and 4
# processes it converts the tars twice: pass-through (S x 3S/4 px JPEGs, S = BENCH_SIDE, 24 by
# default, fit --max-side 512: validated by a full decode and stored as given) and re-encoded
# (--max-side 2S/3: decoded, resized, encoded again as JPEG at quality 90). It prints the wall
# time, samples/s, samples per CPU-second (user + system time of all ranks: the rate of one
# core) and the peak resident memory of the largest rank, then the growth of that peak from the smallest size to
# each larger one (the streaming bound: at most 16 MB from 10k to 1M samples).
#
# Usage: bench_shard.sh BUILD_DIR [SIZES] [NPS]   (defaults "10000 100000 1000000", "1 2 4")
#        BENCH_DIR=/path keeps the tars there (default: a temporary directory, removed after)
#        BENCH_SIDE=256 makes photo-sized images (a 10k set is then 200 MB of tars)
set -euo pipefail
build=$(cd "$1" && pwd)
sizes=${2:-"10000 100000 1000000"}
nps=${3:-"1 2 4"}
side=${BENCH_SIDE:-24}
shard="$build/data_tools/coca-shard"
tool="$build/tests/data/wds_tool"
work=${BENCH_DIR:-$(mktemp -d /tmp/coca-bench-shard.XXXXXX)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
echo "coca-shard benchmark: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), images ${side} px"
printf "%-9s %-12s %3s %8s %10s %14s %12s\n" samples mode np wall_s samples/s samples/cpu-s peak_rss_MB
declare -A peak
for n in $sizes; do
  tars=$((n / 1000))
  in="$work/in$n-$side"
  if [ ! -e "$in/$(printf %05d $((tars - 1))).tar" ]; then
    rm -rf "$in"
    "$tool" make "$in" "$tars" 1000 --clean --side "$side" >/dev/null
  fi
  pattern="$in/{00000..$(printf %05d $((tars - 1)))}.tar"
  for mode in pass-through re-encode; do
    extra=()
    [ $mode = re-encode ] && extra=(--max-side $((side * 2 / 3)))
    for np in $nps; do
      out="$work/out"
      rm -rf "$out" "$work/rusage."*
      t0=$(date +%s.%N)
      # One /usr/bin/time per rank: its peak RSS (KB) and CPU seconds.
      mpirun --bind-to none -np "$np" bash -c 'exec /usr/bin/time -f "%M %U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' \
        "$work/rusage" "$shard" --format wds --input "$pattern" --output "$out" --quiet "${extra[@]}" >/dev/null
      t1=$(date +%s.%N)
      written=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total_samples"])' "$out/index.json")
      [ "$written" = "$n" ] || { echo "bench_shard: $written samples written, expected $n" >&2; exit 1; }
      read -r rss cpu < <(cat "$work/rusage."* | awk '{ if ($1 > m) m = $1; c += $2 + $3 } END { print m, c }')
      awk -v n="$n" -v mode="$mode" -v np="$np" -v t0="$t0" -v t1="$t1" -v rss="$rss" -v cpu="$cpu" 'BEGIN {
        w = t1 - t0; printf "%-9d %-12s %3d %8.1f %10.0f %14.0f %12.1f\n", n, mode, np, w, n / w, n / cpu, rss / 1024 }'
      key="$mode/$np"
      [ -n "${peak[$key]:-}" ] || peak[$key]="$n:$rss"
      first=${peak[$key]}
      if [ "${first%%:*}" != "$n" ]; then
        awk -v a="${first%%:*}" -v ra="${first##*:}" -v b="$n" -v rb="$rss" -v k="$key" 'BEGIN {
          printf "          peak RSS %s: %.1f MB at %d samples, %.1f MB at %d: %+.1f MB\n", k, ra / 1024, a, rb / 1024, b, (rb - ra) / 1024 }'
      fi
    done
  done
done
