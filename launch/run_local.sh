#!/usr/bin/env bash
# mpirun -np N on this machine: launch/run_local.sh N [coca-train options...]
# Each rank gets cores/N compute threads (coca-train divides the host's cores by its local ranks).
# Ctrl-C (or SIGTERM to this script) saves a checkpoint and stops; twice stops at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
np=${1:?usage: run_local.sh NRANKS [coca-train options]}
shift
extra=()
[[ $(id -u) == 0 ]] && extra+=(--allow-run-as-root)
(( np > $(nproc) )) && extra+=(--oversubscribe)
exec "$root/launch/graceful.sh" mpirun "${extra[@]}" -np "$np" --bind-to none "$root/build/coca-train" "$@"
