#!/usr/bin/env bash
# Multi-node on one machine: two torchrun launchers (--nnodes=2, one process each, rendezvous on
# localhost) run a DDP check script; both must pass. Usage: multinode_check.sh <torchrun> <check> [Rscript]
#   multinode_check.sh .venv/bin/torchrun tests/distributed/ddp_check.py
#   multinode_check.sh .venv/bin/torchrun tests/distributed/ddp_check.R Rscript
set -uo pipefail
torchrun=$1
script=$2
runner=${3:-}
python=$(dirname "$torchrun")/python
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for node in 0 1; do
  PYLUZ_DDP_TIMEOUT=60 timeout 300 "$torchrun" --nnodes=2 --nproc_per_node=1 --node_rank=$node \
    --master_addr=127.0.0.1 --master_port="$port" ${runner:+--no-python "$runner"} "$script" \
    >"$logs/node$node.log" 2>&1 &
  pids+=($!)
done
failed=0
for node in 0 1; do
  wait "${pids[$node]}" || failed=1
done
if [ "$failed" -ne 0 ]; then
  for node in 0 1; do echo "--- node $node"; grep -v '^W[0-9]' "$logs/node$node.log" | tail -30; done
  echo "multi-node ($(basename "$script")): FAILED"
  exit 1
fi
grep -v '^W[0-9]' "$logs/node0.log" | grep -i "passed"
echo "multi-node ($(basename "$script")): ok, 2 launchers with --nnodes=2"
