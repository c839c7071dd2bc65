#!/usr/bin/env bash
# run_if_gpus.sh <n> <command...>: runs the command when this host has at least n GPUs, else
# reports the skip and passes.
n=$1
shift
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${have:-0}" -lt "$n" ]; then
  echo "SKIPPED: needs ${n} GPUs, this host has ${have:-0}"
  exit 0
fi
exec "$@"
