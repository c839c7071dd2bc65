#!/usr/bin/env bash
# What crossing hosts costs: the test fixture's model trained for 30 steps (4 ranks, batch 4
# per rank) on 1 host x 4 ranks, 2 hosts x 2 ranks, and 2 x 2 with node2's link at 5 Mbit/s
# (tc tbf) or losing 1% of its packets (nftables). Prints a markdown table: the mean step time
# over steps 11-30 and rank 0's mean wait for the gradient all-reduce (metrics.jsonl
# wait_comm_s). Needs root (network namespaces), as tests/multinode/multinode.sh.
# usage: bench.sh BUILD_DIR
source "$(dirname "$0")/../faults/lib.sh"
source "$(dirname "$0")/hosts.sh"
why=$(mn_skip_reason)
if [ -n "$why" ]; then echo "SKIP: $why"; exit 77; fi
trap 'mn_teardown; cleanup' EXIT
make_fixture
mn_hosts 2 || exit 1
export COCA_BUILD_DIR=$build OMP_NUM_THREADS=1
grep node1 "$work/hostfile" >"$work/hostfile1"
common=(--train-data "$fx/train" --model-config "$fx/model.json" --batch-size 4 --workers 1 --warmup 2
        --log-every-n-steps 1 --save-frequency 0 --logs "$work/logs" --max-steps 30 --epochs 100)
launch() { on_host 1 "$repo/launch/run_multinode.sh" "$@" >"$work/$name.log" 2>&1; }
row() {
  python3 - "$work/logs/$name/metrics.jsonl" "$1" <<'PY'
import json, sys
r = [x for x in map(json.loads, open(sys.argv[1])) if "loss" in x and 11 <= x["step"] <= 30]
steps = r[-1]["elapsed_s"] - r[0]["elapsed_s"]
print(f"| {sys.argv[2]} | {steps / (len(r) - 1) * 1000:.0f} ms | {sum(x['wait_comm_s'] for x in r) / len(r) * 1000:.0f} ms |")
PY
}
echo "| layout | step time | rank 0 waits for the gradient all-reduce |"
echo "|---|---|---|"
name=one; launch "$work/hostfile1" 4 "${common[@]}" --name one && row "1 host x 4 ranks"
name=two; launch "$work/hostfile" 2 "${common[@]}" --name two && row "2 hosts x 2 ranks"
ip netns exec "${mn_prefix}h2" tc qdisc add dev eth0 root tbf rate 5mbit burst 32kbit latency 400ms
name=slow; launch "$work/hostfile" 2 "${common[@]}" --name slow && row "2 x 2, node2 at 5 Mbit/s"
ip netns exec "${mn_prefix}h2" tc qdisc del dev eth0 root
ip netns exec "${mn_prefix}h2" nft -f - <<'NFT'
table inet coca_loss {
  chain out { type filter hook output priority 0; numgen random mod 100 < 1 drop; }
}
NFT
name=lossy; launch "$work/hostfile" 2 "${common[@]}" --name lossy && row "2 x 2, node2 losing 1% of packets"
