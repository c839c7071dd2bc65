#!/usr/bin/env bash
# launch/graceful.sh mpirun ... coca-train ...
#
# Runs a training launcher so that Ctrl-C, or SIGTERM to this script, stops the run the way a
# user wants: the first signal is passed on to the launcher as SIGUSR1, which mpirun (and srun)
# forward to every rank; coca-train finishes its step, writes a checkpoint and exits 0, and the
# run continues later with --resume latest. A second Ctrl-C or SIGTERM stops the job at once.
# Exit status: the launcher's, except that a run stopped this way exits 130 (SIGINT) or 143
# (SIGTERM) even when every rank saved and exited 0, so that a calling script stops too.
#
# Why not plain mpirun: on SIGINT or SIGTERM mpirun kills the ranks about a second later, too
# soon for a step plus a save, so the work since the last checkpoint would be lost.
# The launcher runs in its own process group (set -m) with stdin from /dev/null, so a
# terminal's Ctrl-C reaches only this script, which decides what the ranks get.
set -uo pipefail
(( $# > 0 )) || { echo "usage: graceful.sh LAUNCHER [ARGS...]" >&2; exit 2; }
set -m
"$@" </dev/null &
pid=$!
signals=0
first=0
on_signal() {
  signals=$((signals + 1))
  (( first == 0 )) && first=$2
  if (( signals == 1 )); then
    echo "graceful: $1: asking every rank to finish its step, save a checkpoint and stop" \
         "($1 again to stop at once)" >&2
    kill -USR1 "$pid" 2>/dev/null
  else
    echo "graceful: $1 again: stopping at once (the last checkpoint is kept)" >&2
    kill -TERM "$pid" 2>/dev/null
  fi
}
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
while :; do
  wait "$pid"
  rc=$?
  # A trapped signal interrupts `wait` (status > 128) while the launcher still runs.
  kill -0 "$pid" 2>/dev/null || break
done
wait "$pid" 2>/dev/null
rc2=$?
(( rc2 != 127 )) && rc=$rc2
(( rc == 0 && first != 0 )) && rc=$first
exit "$rc"
