#!/usr/bin/env bash
# Start an N-node Ray cluster on this machine for trying CAE_CLUSTER (docs/cluster.md):
#   bash scripts/cluster_local.sh 2      # a head and one more node, then prints what to export
#   bash scripts/cluster_local.sh stop   # `ray stop`: ends every Ray process of this user here
# Each node gets CAE_NODE_CPUS CPUs (default 1, so one training per node); the head listens on
# CAE_CLUSTER_PORT (default 6380). Needs Ray: .venv/bin/pip install -r requirements-cluster.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ray=.venv/bin/ray
if [ ! -x "$ray" ]; then
  echo "Ray is not installed in .venv: .venv/bin/pip install -r requirements-cluster.txt" >&2
  exit 2
fi
if [ "${1:-}" = "stop" ]; then
  exec "$ray" stop
fi
nodes="${1:-2}"
if ! [[ "$nodes" =~ ^[1-9][0-9]*$ ]]; then
  echo "the number of nodes must be a whole number from 1, or 'stop'. Received: $nodes" >&2
  exit 2
fi
port="${CAE_CLUSTER_PORT:-6380}"
cpus="${CAE_NODE_CPUS:-1}"
export RAY_USAGE_STATS_ENABLED=0  # offline: nothing is reported anywhere
"$ray" start --head --port="$port" --num-cpus="$cpus" --include-dashboard=false >/dev/null
for _ in $(seq 2 "$nodes"); do
  "$ray" start --address="127.0.0.1:$port" --num-cpus="$cpus" >/dev/null
done
echo "A $nodes-node Ray cluster runs here ($cpus CPU each). Point the app or the CLI at it:"
echo "  export CAE_CLUSTER=127.0.0.1:$port"
echo "Stop it with: bash scripts/cluster_local.sh stop"
