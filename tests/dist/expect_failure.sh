#!/usr/bin/env bash
# expect_failure.sh <limit seconds> <output regex> <command...>
# Passes when the command (an mpirun job in which one rank fails) exits non-zero within the
# limit, no rank wrote a "finished" marker, and the output matches the regex (which names the
# failed rank). The command gets the marker directory as its last argument.
set -u
limit=$1 pattern=$2
shift 2
markers=$(mktemp -d)
trap 'rm -rf "$markers"' EXIT
start=$(date +%s)
out=$(timeout --kill-after=10 $((limit + 30)) "$@" "$markers" 2>&1)
rc=$?
elapsed=$(($(date +%s) - start))
echo "$out" | tail -n 30
echo "-- exit code $rc after ${elapsed} s"
fail() { echo "FAIL: $*"; exit 1; }
[ "$rc" -ne 0 ] || fail "the job exited 0"
[ "$elapsed" -le "$limit" ] || fail "the job took ${elapsed} s (limit ${limit} s)"
[ -z "$(ls -A "$markers")" ] && true || fail "a rank finished normally: $(ls "$markers")"
echo "$out" | grep -Eq "$pattern" || fail "the output does not match /$pattern/"
echo "PASS"
