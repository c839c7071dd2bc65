#!/usr/bin/env bash
# Trains the same recipe with coca-train and with the independent PyTorch reference
# (tests/reference/train_reference.py), on this machine, one run after the other for each seed,
# and evaluates both with the same `coca-eval zeroshot`, so that only the training differs.
# Writes OUT/results.md and OUT/results.json: top-1, top-5 and mean-per-class accuracy per
# system as the mean over the seeds with min/max and std, with the steps each made.
#
#   launch/compare_recipe.sh [--split test|validation] [--seeds "0 1 2"] [--minutes 5] [-- coca-train flags]
#
# --split test        train on the apple, google and facebook emoji, zero-shot on twitter's
# --split validation  train on two of them, zero-shot on the third (--hold-out, default google);
#                     choose recipes here, never on twitter
# --minutes M         each run's training budget (coca-train --max-minutes; the reference plans its
#                     cosine the same way) (default 5)
# --ranks N --threads T  coca-train runs N ranks of T threads; the reference one process with the
#                     N x batch-size batch (N ranks compute what one process with the whole batch
#                     does) and N x T threads (OPENBLAS_NUM_THREADS and torch.set_num_threads), with
#                     the BLAS kernels coca uses (default 2 x 1, as the quickstart)
# --epochs E          at most E epochs (default 8, as the quickstart)
# --config FILE       the recipe (default launch/configs/quickstart.cfg); flags after `--` are
#                     added to it for both systems (e.g. -- --lr 2e-3)
# --systems "coca torch", --out DIR (default logs/compare-<split>), --data DIR (default data/emoji),
# --build DIR (default build)
# --train-data DIR --eval-data DIR --templates FILE --model-config FILE: other data and model
#                     (tests/launch/test_compare_recipe.sh runs a micro model this way)
# A run whose zeroshot.json exists with the same command is reused; delete OUT to start over.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command="launch/compare_recipe.sh${*:+ $*}"
split=test hold_out=google seeds="0 1 2" minutes=5 ranks=2 threads=1 epochs=8
config=$root/launch/configs/quickstart.cfg systems="coca torch" out="" data=$root/data/emoji build=$root/build
train_data="" eval_data="" templates="" model_config="" extra=()
while (( $# )); do
  case $1 in
    --split) split=$2; shift 2 ;;
    --hold-out) hold_out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --train-data) train_data=$2; shift 2 ;;
    --eval-data) eval_data=$2; shift 2 ;;
    --templates) templates=$2; shift 2 ;;
    --model-config) model_config=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "compare_recipe: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $split == test || $split == validation ]] || { echo "compare_recipe: --split test or validation" >&2; exit 2; }
out=${out:-$root/logs/compare-$split}
build=$(cd "$build" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
py=/usr/bin/python3
for tool in "$build/coca-train" "$build/coca-eval" "$build/coca-sysinfo"; do
  [[ -x $tool ]] || { echo "compare_recipe: $tool not found; build first (launch/build.sh)" >&2; exit 1; }
done
if [[ " $systems " == *" torch "* ]] && ! "$py" -c "import torch, h5py" 2>/dev/null; then
  echo "compare_recipe: $py cannot import torch and h5py (apt-get install python3-torch python3-h5py)" >&2; exit 1
fi

# The data: the emoji set (made when missing), or what --train-data / --eval-data name.
if [[ -z $train_data || -z $eval_data ]]; then
  if [[ $split == test ]]; then
    COCA_BIN=$build/data_tools "$root/data_tools/make_emoji_dataset.sh" "$data" >/dev/null
    train_data=${train_data:-$data/train} eval_data=${eval_data:-$data/twitter_eval}
  else
    HOLD_OUT=$hold_out COCA_BIN=$build/data_tools "$root/data_tools/make_emoji_dataset.sh" "$data" >/dev/null
    train_data=${train_data:-$data/holdout_$hold_out/train} eval_data=${eval_data:-$data/holdout_$hold_out/eval}
  fi
fi
templates=${templates:-$root/launch/templates/emoji.txt}
model=(--model coca_tiny)
[[ -n $model_config ]] && model=(--model-config "$model_config")
mkdir -p "$out"
"$build/coca-sysinfo" >"$out/sysinfo.txt"
blas_core=$(sed -n 's/^blas_core: //p' "$out/sysinfo.txt")

# run_once DIR COMMAND...: runs COMMAND (its output to DIR/train.log) unless DIR holds the
# zero-shot result of the same command.
run_once() {
  local dir=$1; shift
  local cmd="$*"
  if [[ -f $dir/zeroshot.json && -f $dir/command.txt && $(cat "$dir/command.txt") == "$cmd" ]]; then
    echo "   $(basename "$dir"): done before, reused"
    return 1
  fi
  rm -rf "$dir" && mkdir -p "$dir"
  echo "$cmd" >"$dir/command.txt"
  local start=$SECONDS
  cut -d' ' -f1 /proc/loadavg >"$dir/load_before"  # other work on the machine slows both systems
  "$@" >"$dir/train.log" 2>&1 || { echo "compare_recipe: $(basename "$dir") failed; see $dir/train.log" >&2; tail -5 "$dir/train.log" >&2; exit 1; }
  echo $(( SECONDS - start )) >"$dir/wall_seconds"
  cut -d' ' -f1 /proc/loadavg >"$dir/load_after"
  return 0
}

evaluate() {  # evaluate DIR WEIGHTS
  mpirun -np "$ranks" "$build/coca-eval" zeroshot "${model[@]}" --weights "$2" --data "$eval_data" \
    --templates "$templates" --output "$1/zeroshot.json" >"$1/eval.log" 2>&1 || {
    echo "compare_recipe: zero-shot evaluation of $1 failed; see $1/eval.log" >&2; tail -5 "$1/eval.log" >&2; exit 1; }
  "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   zero-shot top-1 %.2f%%, top-5 %.2f%%" % (100*r["top1"], 100*r["top5"]))' "$1/zeroshot.json"
}

echo "compare_recipe: $split split, train $train_data, zero-shot $eval_data; seeds $seeds; $minutes min each;"
echo "   coca $ranks ranks x $threads threads, the reference 1 process x $((ranks * threads)) threads (OpenBLAS $blas_core) -> $out"
for seed in $seeds; do
  for system in $systems; do
    dir=$out/$system-seed$seed
    case $system in
      coca)
        echo "== coca-train, seed $seed"
        if run_once "$dir" mpirun -np "$ranks" "$build/coca-train" --config "$config" "${model[@]}" --train-data "$train_data" \
            --epochs "$epochs" --max-minutes "$minutes" --threads "$threads" --seed "$seed" --save-every-n-steps 0 \
            --logs "$out" --name "$(basename "$dir")" "${extra[@]}"; then
          evaluate "$dir" "$dir/checkpoints/$(cat "$dir/checkpoints/latest")/model.safetensors"
        fi ;;
      torch)
        echo "== PyTorch reference, seed $seed"
        if run_once "$dir" env OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$blas_core}" "$py" "$root/tests/reference/train_reference.py" \
            --config "$config" "${model[@]}" --train-data "$train_data" --epochs "$epochs" --max-minutes "$minutes" \
            --world-size "$ranks" --threads "$((ranks * threads))" --seed "$seed" --out "$dir" "${extra[@]}"; then
          evaluate "$dir" "$dir/model.safetensors"
        fi ;;
      *) echo "compare_recipe: unknown system '$system' (coca, torch)" >&2; exit 2 ;;
    esac
  done
done

args=(--out "$out" --split "$split" --train-data "$train_data" --eval-data "$eval_data" --minutes "$minutes"
      --ranks "$ranks" --threads "$threads" --sysinfo "$out/sysinfo.txt" --command "$command")
# shellcheck disable=SC2086  # the lists are words
"$py" "$root/launch/compare_table.py" "${args[@]}" --systems $systems --seeds $seeds
