#!/usr/bin/env bash
# Runs the fuzz harnesses: tests/fuzz/run.sh SECONDS [NAME] runs every harness (or fuzz_NAME
# alone) for SECONDS each, one after the other, and prints per harness the executions, libFuzzer's
# final coverage (cov: edges, ft: features) and the corpus size. Any finding (crash, sanitizer
# report, uncaught exception, leak, timeout over 10 s, RSS over 2 GB, a malloc over 1 GB) fails
# the run, naming the input file that reproduces it and printing the stack.
#
# New inputs go to a temporary directory (the first corpus, discarded; COCA_FUZZ_KEEP=DIR keeps
# them in DIR instead); the committed corpus tests/fuzz/corpus/NAME is read, never written.
# Crash files go to ${COCA_FUZZ_ARTIFACTS:-BUILD/artifacts}/NAME/. Builds the harnesses first
# (tests/fuzz/build.sh, into ${COCA_FUZZ_BUILD_DIR:-build-fuzz}); exit 77 (skipped) without clang.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${COCA_FUZZ_BUILD_DIR:-$root/build-fuzz}
artifacts=${COCA_FUZZ_ARTIFACTS:-$build/artifacts}
if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: tests/fuzz/run.sh SECONDS [NAME]   (NAME: $(cd "$here" && ls fuzz_*.cpp | sed 's/fuzz_//; s/\.cpp//' | tr '\n' ' '))" >&2
  exit 2
fi
seconds=$1
if [ $# -ge 2 ]; then
  names=("${2#fuzz_}")
  [ -f "$here/fuzz_${names[0]}.cpp" ] || { echo "fuzz: no harness tests/fuzz/fuzz_${names[0]}.cpp" >&2; exit 2; }
else
  # The checkpoint and pickle harnesses last (their parsers are the slowest to run per input).
  mapfile -t names < <(cd "$here" && ls fuzz_*.cpp | sed 's/^fuzz_//; s/\.cpp$//' | grep -v -x -e torch_checkpoint -e pickle)
  names+=(pickle torch_checkpoint)
fi

# Build (incremental: a no-op when nothing changed), quietly unless it fails or skips.
buildlog=$(mktemp "${TMPDIR:-/tmp}/coca-fuzz-build.XXXXXX")
COCA_FUZZ_BUILD_DIR=$build "$here/build.sh" >"$buildlog" 2>&1
rc=$?
if [ $rc != 0 ]; then
  if [ $rc = 77 ]; then grep '^fuzz:' "$buildlog"; else tail -40 "$buildlog"; echo "fuzz: build failed"; fi
  rm -f "$buildlog"
  exit $rc
fi
rm -f "$buildlog"

# UBSan prints no stack unless asked; ASan's reports include one.
export UBSAN_OPTIONS=print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}
failed=()
for n in "${names[@]}"; do
  work=$(mktemp -d "${TMPDIR:-/tmp}/coca-fuzz-$n.XXXXXX")
  new=${COCA_FUZZ_KEEP:-$work/new}
  mkdir -p "$new" "$artifacts/$n"
  log=$work/log
  dict=()
  [ -f "$here/$n.dict" ] && dict=(-dict="$here/$n.dict")
  start=$(date +%s)
  # TMPDIR: the harnesses' scratch files (fuzz_common.h) go in $work, removed below even when
  # libFuzzer ends the process without running atexit handlers.
  TMPDIR=$work "$build/fuzz_$n" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$n/" "${dict[@]}" "$new" "$here/corpus/$n" >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  corp_bytes=$(sed -n 's/.* corp: [0-9]*\/\([0-9A-Za-z]*\).*/\1/p' <<<"$last")
  seeds=$(find "$here/corpus/$n" -type f | wc -l)
  printf 'fuzz_%s: %s runs in %ss (%s/s), cov %s, ft %s, corpus %s inputs of %s (%s committed)\n' \
    "$n" "${runs:-?}" "$elapsed" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${corp_bytes:-?}" "$seeds"
  if [ $rc != 0 ]; then
    failed+=("$n")
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz_$n: FINDING (exit $rc); input: ${crash:-none written}"
    [ -n "$crash" ] && echo "  reproduce: $build/fuzz_$n $crash"
    # The report: the error lines and the first 40 stack frames (long template names cut short).
    first=$(grep -n -m1 -E '^==[0-9]+==ERROR|runtime error:|^fuzz: |terminate called|ERROR: libFuzzer' "$log" | cut -d: -f1)
    tail -n +"${first:-1}" "$log" |
      grep -E '^==[0-9]+==|ERROR|runtime error:|^fuzz: |terminate called|what\(\):|^ *#[0-9]+ |SUMMARY|^(READ|WRITE) of|allocated by|freed by' |
      grep -v -E 'in fuzzer::|in __libc_start|in _start|in main .*fuzz_' | cut -c1-240 | head -48
  fi
  [ -n "${COCA_FUZZ_KEEP:-}" ] || rm -rf "$work"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (crash inputs under $artifacts)"
  exit 1
fi
