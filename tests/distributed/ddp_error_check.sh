#!/usr/bin/env bash
# An error on one rank ends every rank with that error (no hang, no bare "Connection reset by peer"):
# runs tests/distributed/ddp_error.py and ddp_error.R (an R callback) under torchrun with 2 ranks.
# Rank 1 fails in epoch 2; rank 0, whose next collective breaks, must fail with rank 1's message.
# Usage: ddp_error_check.sh <torchrun>
set -uo pipefail
torchrun=$1
here=$(cd "$(dirname "$0")" && pwd)
check() {  # <what> <launcher arguments...>
  local what=$1
  shift
  out=$(PYLUZ_DDP_TIMEOUT=60 timeout 180 "$torchrun" --standalone --nproc_per_node=2 "$@" 2>&1)
  rc=$?
  fail() { echo "ddp ($what error on one rank): FAILED: $1"; echo "$out" | tail -40; exit 1; }
  [ "$rc" -eq 124 ] && fail "the ranks did not end within 180 s"
  [ "$rc" -eq 0 ] && fail "torchrun succeeded"
  grep -q "rank 1 broke in epoch 2" <<<"$out" || fail "the error is not in the output"
  grep -q "Rank 1 of the data-parallel fit failed, so this rank stopped too: .*rank 1 broke in epoch 2" <<<"$out" ||
    fail "rank 0 did not end with rank 1's error"
  grep -q "finished training" <<<"$out" && fail "a rank finished training"
  echo "ddp ($what error on one rank): ok (torchrun exit status $rc)"
}
check Python "$here/ddp_error.py"
check R --no-python Rscript "$here/ddp_error.R"
