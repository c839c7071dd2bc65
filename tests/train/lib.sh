# Shared set-up of the coca-train end-to-end scripts in this folder. Sourced as
#   . "$(dirname "$0")/lib.sh" NAME BUILD_DIR [make_train_fixture options]
# it sets build, train (the coca-train binary), work (a fresh folder /tmp/NAME.XXXXXX, removed
# on exit unless KEEP is set), mpirun_ (two ranks), fail and check, and writes the micro
# fixture (make_train_fixture) to $work/fx.
set -u
build=$2
train="$build/coca-train"
work=$(mktemp -d "/tmp/$1.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
mpirun_=(mpirun --allow-run-as-root --oversubscribe -np 2)
fail=0
check() {  # check <description> <condition-command...>
  local what=$1; shift
  if "$@"; then echo "PASS $what"; else echo "FAIL $what"; fail=1; fi
}
"$build/tests/train/make_train_fixture" "$work/fx" "${@:3}" >/dev/null || { echo "FAIL fixture"; exit 1; }
