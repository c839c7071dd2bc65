#!/usr/bin/env bash
# Multi-node training over a hostfile:  launch/run_multinode.sh HOSTFILE RANKS_PER_NODE [coca-train options]
#
# HOSTFILE lines look like "node01 slots=8". One rank per GPU (or per CPU socket on CPU runs).
# Knobs that matter (exported to every rank with -x):
#   NCCL_SOCKET_IFNAME   the interface NCCL bootstraps over (e.g. ib0, eth0); set it when hosts
#                        have several, or NCCL may pick a docker/virtual one.
#   NCCL_IB_HCA          which InfiniBand adapters to use (e.g. mlx5_0,mlx5_1); NCCL_IB_DISABLE=1 forces TCP.
#   NCCL_DEBUG=WARN      (INFO to see the chosen transports and rings when a run is slow or hangs)
#   OMPI_MCA_btl_tcp_if_include / OMPI_MCA_oob_tcp_if_include   the same choice for MPI's own traffic
#   OMP_NUM_THREADS      compute threads per rank (CPU runs; default: cores / ranks per node)
#   COCA_COLLECTIVE_TIMEOUT_S  seconds a rank waits in a collective before it stops the job,
#                        naming the ranks (and hosts) that never joined (default 600)
#   OMPI_MCA_oob_tcp_keepalive_time/_intvl/_probes   how soon mpirun notices a host that
#                        vanished (a dead link): 10 s idle, then 3 probes 2 s apart, unless set
#   COCA_LINK_CHECK      auto (default), always or off: time transfers between hosts when steps
#                        wait on collectives, and name a host behind a slow link (README, Multi-node)
#   COCA_LINK_CHECK_KB   the size of those transfers (default 64; larger catches faster links)
#   COCA_BUILD_DIR       where coca-train is (default: build/ beside this script)
#   every COCA_* variable of this environment is passed to every rank
# coca-train's --threads overrides OMP_NUM_THREADS. Ctrl-C (or SIGTERM to this script) saves a
# checkpoint and stops; twice stops at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
hostfile=${1:?usage: run_multinode.sh HOSTFILE RANKS_PER_NODE [coca-train options]}
per_node=${2:?usage: run_multinode.sh HOSTFILE RANKS_PER_NODE [coca-train options]}
shift 2
nodes=$(grep -cv '^\s*\(#\|$\)' "$hostfile")
np=$(( nodes * per_node ))
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
# Open MPI's default keepalive notices a lost daemon after 8 minutes; a job whose node lost its
# link would sit that long before it ends.
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-10}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-2}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-3}
envs=()
# coca's own settings (COCA_COLLECTIVE_TIMEOUT_S, COCA_DATA_DIR, ...) go to every rank too.
for v in NCCL_SOCKET_IFNAME NCCL_IB_HCA NCCL_IB_DISABLE NCCL_DEBUG OMP_NUM_THREADS \
         OMPI_MCA_btl_tcp_if_include OMPI_MCA_oob_tcp_if_include $(compgen -e | grep '^COCA_'); do
  [[ -n ${!v:-} ]] && envs+=(-x "$v")
done
extra=()
[[ $(id -u) == 0 ]] && extra+=(--allow-run-as-root)
echo "run_multinode: $nodes nodes x $per_node ranks = $np ranks"
exec "$root/launch/graceful.sh" mpirun "${extra[@]}" --hostfile "$hostfile" -np "$np" --map-by "ppr:${per_node}:node" --bind-to none \
  "${envs[@]}" "${COCA_BUILD_DIR:-$root/build}/coca-train" "$@"
