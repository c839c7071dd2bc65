#!/usr/bin/env bash
# What crossing hosts costs: coca_tiny trained for 10 steps (4 ranks, batch 4 per rank, one
# compute thread each) on 1 host x 4 ranks, 2 hosts x 2 ranks, and 2 x 2 with node2's outgoing
# link limited to $RATE (default 100mbit, tc tbf) or losing 1% of its packets (nftables). Prints
# a markdown table from metrics.jsonl, means over steps 6-10: the step time, rank 0's wait for
# the gradient all-reduce after backward (the part that backward did not hide), its time in the
# embedding all-gather (the contrastive loss's gather forward, its reduce-scatter backward), the
# median rank's compute (outside collectives), the step time less that compute (the collectives'
# share, which varies less than either on a busy machine), and the host the link check named (1 MB
# transfers, COCA_LINK_CHECK_KB=1024). Needs root (network namespaces), as
# tests/multinode/multinode.sh.
# usage: bench.sh BUILD_DIR
source "$(dirname "$0")/../faults/lib.sh"
source "$(dirname "$0")/hosts.sh"
mn_start 2
make_fixture --context-length 32  # coca_tiny's context
RATE=${RATE:-100mbit}
export COCA_LINK_CHECK_KB=1024
common=(--train-data "$fx/train" --model coca_tiny --batch-size 4 --workers 1 --warmup 2 --lr-scheduler const
        --log-every-n-steps 1 --save-frequency 0 --logs "$work/logs" --max-steps 10 --epochs 100)
row() {  # row NAME LABEL
  python3 - "$work/logs/$1/metrics.jsonl" "$2" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = [x for x in recs if "loss" in x and 6 <= x["step"] <= 10]
compute = [x["step_compute_s_median"] for x in recs if "step_compute_s_median" in x and x["step"] == 10]
mean = lambda k: sum(x[k] for x in r) / len(r) * 1000
c = compute[-1] * 1000 if compute else float("nan")
slow = sorted({x["slow_link_hosts"] for x in recs if x.get("slow_link_hosts")})
print(f"| {sys.argv[2]} | {mean('step_s'):.0f} ms | {mean('grad_allreduce_wait_s'):.0f} ms | "
      f"{mean('embed_gather_s'):.0f} ms | {c:.0f} ms | {mean('step_s') - c:.0f} ms | {', '.join(slow) or '-'} |")
PY
}
run() {  # run NAME LABEL HOSTFILE RANKS_PER_NODE
  if mn_launch "$3" "$4" "${common[@]}" --name "$1" >"$work/$1.log" 2>&1; then row "$1" "$2"
  else echo "| $2 | failed: $(tail -1 "$work/$1.log" | cut -c1-120) |"; fi
}
echo "coca_tiny, 4 ranks x batch 4, $(getconf _NPROCESSORS_ONLN) cores"
echo "| layout | step time | gradient all-reduce wait | embedding all-gather | compute (median rank) | step less compute | slow link named |"
echo "|---|---|---|---|---|---|---|"
run one "1 host x 4 ranks" "$work/hostfile1" 4
run two "2 hosts x 2 ranks" "$work/hostfile" 2
mn_slow_link 2 "$RATE" 128kb
run slow "2 x 2, node2 sending at $RATE" "$work/hostfile" 2
mn_clear_link 2
if mn_lossy_link 2 1; then
  run lossy "2 x 2, node2 losing 1% of packets" "$work/hostfile" 2
  mn_clear_link 2
fi
