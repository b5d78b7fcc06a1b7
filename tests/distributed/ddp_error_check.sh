#!/usr/bin/env bash
# An R error on one rank ends every rank with a failure and shows the R error (no hang): runs
# tests/distributed/ddp_error.R under torchrun with 2 ranks. Usage: ddp_error_check.sh <torchrun>
set -uo pipefail
torchrun=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(PYLUZ_DDP_TIMEOUT=60 timeout 180 "$torchrun" --standalone --nproc_per_node=2 --no-python \
  Rscript "$here/ddp_error.R" 2>&1)
rc=$?
fail() { echo "ddp (R error on one rank): FAILED: $1"; echo "$out" | tail -40; exit 1; }
[ "$rc" -eq 124 ] && fail "the ranks did not end within 180 s"
[ "$rc" -eq 0 ] && fail "torchrun succeeded"
grep -q "rank 1 broke in epoch 2" <<<"$out" || fail "the R error is not in the output"
grep -q "finished training" <<<"$out" && fail "a rank finished training"
echo "ddp (R error on one rank): ok (torchrun exit status $rc)"
