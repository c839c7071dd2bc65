#!/usr/bin/env bash
# The main job on one machine: install what is missing, build, make the emoji dataset
# (npm packages emoji-datasource-*), train coca_tiny with `mpirun -np 2` for a bounded time,
# evaluate zero-shot on the held-out twitter emoji, print the results table (with the machine:
# CPU model, cores used, one-thread sgemm GFLOP/s from build/coca-sysinfo) and write the plot.
# Running it again reuses what exists (dataset, build, finished run).
#
# Environment: NP (ranks, default 2), EPOCHS (default 8), MINUTES (time budget, default 15:
# after the warmup coca-train measures its step time and ends the cosine schedule when the
# budget does, or at the end of EPOCHS if that comes first),
# DATA (default ./data/emoji), LOGS (default ./logs), RUN (run name, default quickstart).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
NP=${NP:-2}
EPOCHS=${EPOCHS:-8}
MINUTES=${MINUTES:-15}
DATA=${DATA:-$root/data/emoji}
LOGS=${LOGS:-$root/logs}
RUN=${RUN:-quickstart}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

echo "== 1/5 setup"
"$root/launch/setup.sh"
echo "== 2/5 build"
"$root/launch/build.sh"
bin=$root/build

echo "== 3/5 dataset ($DATA)"
COCA_BIN=$bin/data_tools "$root/data_tools/make_emoji_dataset.sh" "$DATA"

run_dir=$LOGS/$RUN
echo "== 4/5 train coca_tiny on $NP ranks ($EPOCHS epochs, at most $MINUTES minutes) -> $run_dir"
if [[ -f $run_dir/checkpoints/latest && -f $run_dir/done ]]; then
  echo "   finished run found; reusing it (delete $run_dir to train again)"
else
  resume=()
  [[ -f $run_dir/checkpoints/latest ]] && resume=(--resume latest)
  start=$(date +%s)
  # Ctrl-C saves a checkpoint and stops (run the script again to continue); twice stops at once.
  "$root/launch/graceful.sh" mpirun -np "$NP" "$bin/coca-train" --config "$root/launch/configs/quickstart.cfg" \
    --train-data "$DATA/train" \
    --epochs "$EPOCHS" --max-minutes "$MINUTES" --logs "$LOGS" --name "$RUN" "${resume[@]}" || {
    rc=$?
    echo "   training stopped (exit $rc); run launch/quickstart.sh again to continue from the last checkpoint"
    exit "$rc"
  }
  echo "   training wall time: $(( $(date +%s) - start )) s"
  echo "$(( $(date +%s) - start ))" >"$run_dir/train_seconds"
  touch "$run_dir/done"
fi

echo "== 5/5 zero-shot on the held-out twitter emoji"
ckpt=$run_dir/checkpoints/$(cat "$run_dir/checkpoints/latest")
mpirun -np "$NP" "$bin/coca-eval" zeroshot --model coca_tiny --weights "$ckpt/model.safetensors" \
  --data "$DATA/twitter_eval" --templates "$root/launch/templates/emoji.txt" \
  --output "$run_dir/zeroshot_twitter.json"
/usr/bin/python3 "$root/launch/plot_metrics.py" "$run_dir/metrics.jsonl" -o "$run_dir/metrics.png" \
  --zeroshot "$run_dir/zeroshot_twitter.json" || \
  echo "   (plot skipped: python3-matplotlib missing?)"
# The machine: coca-train's default threads per rank are cores / ranks (at least 1).
"$bin/coca-sysinfo" >"$run_dir/sysinfo.txt"
threads=$(( $(nproc) / NP )); (( threads >= 1 )) || threads=1
train_s=(); [[ -f $run_dir/train_seconds ]] && train_s=(--train-seconds "$(cat "$run_dir/train_seconds")")
/usr/bin/python3 "$root/launch/results_table.py" --sysinfo "$run_dir/sysinfo.txt" --ranks "$NP" --threads "$threads" \
  --metrics "$run_dir/metrics.jsonl" --zeroshot "$run_dir/zeroshot_twitter.json" "${train_s[@]}" \
  -o "$run_dir/results.md"
echo "results: $run_dir/results.md, $run_dir/zeroshot_twitter.json, plot: $run_dir/metrics.png"
