# Sourced by tests/multinode/*.sh (after tests/faults/lib.sh): hosts made of network namespaces
# on this machine.
#   mn_start N          what every script starts with: skips (exit 77, one line saying why) where
#                       hosts cannot be made, makes hosts node1..N, removes them at exit, writes
#                       $work/hostfile1 (node1 alone) and exports what run_multinode.sh passes to
#                       every rank (COCA_BUILD_DIR, one compute thread per rank)
#   mn_launch HOSTFILE RANKS_PER_NODE ARGS...
#                       launch/run_multinode.sh on node1, as a user would
#   mn_slow_link H RATE [BURST] / mn_lossy_link H PERCENT / mn_clear_link H
#                       host H's outgoing traffic limited to RATE (tc tbf, e.g. 5mbit), or
#                       PERCENT of its packets dropped (nftables); mn_clear_link undoes either
#   mn_hosts N          makes hosts node1..nodeN: a namespace each (own network stack; a UTS
#                       namespace per process started there gives it its host name), a veth
#                       pair each into a bridge that lives in a namespace of its own, addresses
#                       10.77.0.1..N/24 assigned only inside these namespaces, no route
#                       anywhere else; /etc/netns/<ns>/hosts names the hosts. Writes
#                       $work/hostfile and $work/agent.sh, the rsh agent through which
#                       mpirun starts its daemons on a host, as it would over ssh.
#   on_host H CMD...    runs CMD on host H (in its namespace, with its host name)
#   mn_teardown         removes the namespaces, their /etc/netns entries and every process
#                       left in them (also run at exit)
# The agent hides a path from one host's processes when COCA_MN_HIDE_<host>=PATH is set (an
# empty directory bind-mounted over it, in that host's mount namespace only): a node that
# cannot see the shared filesystem.
mn_prefix="cmn$$"
mn_count=0

mn_skip_reason() {  # why hosts cannot be made here ("" when they can)
  [ "$(id -u)" = 0 ] || { echo "not root (network namespaces need CAP_SYS_ADMIN)"; return; }
  command -v ip >/dev/null || { echo "no ip (iproute2)"; return; }
  command -v unshare >/dev/null || { echo "no unshare (util-linux)"; return; }
  ip netns add "${mn_prefix}probe" 2>/dev/null || { echo "cannot create a network namespace"; return; }
  ip netns del "${mn_prefix}probe"
}

mn_hosts() {
  local n=$1 i ns
  mn_count=$n
  ip netns add "${mn_prefix}sw" || return 1
  ip -n "${mn_prefix}sw" link add br0 type bridge || return 1
  ip -n "${mn_prefix}sw" link set br0 up
  ip -n "${mn_prefix}sw" link set lo up
  : >"$work/hostfile"
  local hosts="127.0.0.1 localhost"
  for i in $(seq 1 "$n"); do hosts+=$'\n'"10.77.0.$i node$i"; done
  for i in $(seq 1 "$n"); do
    ns="${mn_prefix}h$i"
    ip netns add "$ns" || return 1
    ip link add "${mn_prefix}v$i" type veth peer name eth0 netns "$ns" || return 1
    ip link set "${mn_prefix}v$i" netns "${mn_prefix}sw"
    ip -n "${mn_prefix}sw" link set "${mn_prefix}v$i" master br0 up
    ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # What the README asks of a cluster's nodes: give up on a connection whose data goes
    # unacknowledged for ~13 s (5 retries) instead of ~15 min, or mpirun waits that long for a
    # node whose link died while it was telling the node to stop.
    ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2=5
    mkdir -p "/etc/netns/$ns"
    printf '%s\n' "$hosts" >"/etc/netns/$ns/hosts"
    echo "node$i slots=8" >>"$work/hostfile"
  done
  cat >"$work/agent.sh" <<AGENT
#!/bin/bash
# rsh agent for mpirun (plm_rsh_agent): agent.sh [options] HOST COMMAND...
while [[ \$1 == -* ]]; do shift; done
host=\$1; shift
case \$host in node[0-9]*) ns="${mn_prefix}h\${host#node}" ;; *) echo "agent: unknown host \$host" >&2; exit 255 ;; esac
hide_var="COCA_MN_HIDE_\$host"
hide=\${!hide_var:-}
exec ip netns exec "\$ns" unshare --uts /bin/sh -c "hostname \$host; \${hide:+mkdir -p /tmp/$mn_prefix-empty && mount --bind /tmp/$mn_prefix-empty '\$hide' && }exec \$*"
AGENT
  chmod +x "$work/agent.sh"
  # What a cluster sets for MPI's own traffic: the interface, the agent, and keepalives so that
  # a daemon whose host vanished is noticed in seconds (run_multinode.sh sets these too).
  export OMPI_MCA_plm_rsh_agent="$work/agent.sh"
  export OMPI_MCA_btl_tcp_if_include=eth0 OMPI_MCA_oob_tcp_if_include=eth0
}

on_host() {  # on_host H CMD...
  local h=$1; shift
  ip netns exec "${mn_prefix}h$h" unshare --uts /bin/sh -c 'hostname "$0"; exec "$@"' "node$h" "$@"
}

mn_teardown() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${mn_prefix}"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "/tmp/$mn_prefix-empty"
}

mn_start() {  # mn_start N
  local why; why=$(mn_skip_reason)
  if [ -n "$why" ]; then echo "SKIP $area: $why"; exit 77; fi
  trap 'mn_teardown; cleanup' EXIT
  mn_hosts "$1" || { echo "FAIL could not make the hosts"; exit 1; }
  grep node1 "$work/hostfile" >"$work/hostfile1"
  export COCA_BUILD_DIR=$build OMP_NUM_THREADS=1
}

mn_launch() {  # mn_launch HOSTFILE RANKS_PER_NODE ARGS...
  on_host 1 "$repo/launch/run_multinode.sh" "$@"
}

mn_slow_link() {  # mn_slow_link H RATE [BURST]: BURST (default 32kbit) at least RATE x 4 ms
  ip netns exec "${mn_prefix}h$1" tc qdisc add dev eth0 root tbf rate "$2" burst "${3:-32kbit}" latency 400ms
}

mn_lossy_link() {  # mn_lossy_link H PERCENT: status 1 where nftables is missing
  command -v nft >/dev/null || return 1
  ip netns exec "${mn_prefix}h$1" nft -f - <<NFT
table inet coca_loss {
  chain out { type filter hook output priority 0; numgen random mod 100 < $2 drop; }
}
NFT
}

mn_clear_link() {  # mn_clear_link H
  ip netns exec "${mn_prefix}h$1" tc qdisc del dev eth0 root 2>/dev/null
  ip netns exec "${mn_prefix}h$1" nft delete table inet coca_loss 2>/dev/null
  return 0
}
