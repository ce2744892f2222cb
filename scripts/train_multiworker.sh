#!/usr/bin/env bash
# Multi-worker training on this machine: N local worker processes on free 127.0.0.1 ports, each
# with its own TF_CONFIG, all running `python -m cae train --strategy multiworker ARGS...`.
#
#   bash scripts/train_multiworker.sh N [train arguments...]
#   bash scripts/train_multiworker.sh 2 --preset classic --dataset mnist-sample --epochs 1 --out models/mw
#
# Worker 0 is the chief: it reports progress and writes the run; the others save nothing. Each
# worker's output goes to a log (the chief's is also shown as it comes, its stderr on stderr);
# the script waits for all of them and exits non-zero if any fails, showing the tail of each
# failed worker's log. All of them leave together once the chief has saved. On several
# machines, run the same `python -m cae train ... --strategy multiworker` on each with TF_CONFIG
# set as this script sets it (see README.md, "Training on several machines").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash scripts/train_multiworker.sh N [train arguments...] (N workers, at least 1)" >&2
  exit 2
fi
workers="$1"
shift
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="python3"

# N free ports: bound to port 0 and released at once (TensorFlow binds them a moment later).
ports=$("$python" - "$workers" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
)
cluster=$("$python" -c 'import json, sys; print(json.dumps([f"127.0.0.1:{p}" for p in sys.argv[1:]]))' $ports)
logs=$(mktemp -d "${TMPDIR:-/tmp}/cae-multiworker-XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM
for ((index = 0; index < workers; index++)); do
  config="{\"cluster\": {\"worker\": $cluster}, \"task\": {\"type\": \"worker\", \"index\": $index}}"
  if [ "$index" -eq 0 ]; then
    # its output as it comes, stdout to stdout and stderr to stderr, and both into its log
    TF_CONFIG="$config" "$python" -m cae train --strategy multiworker "$@" \
      > >(tee -a "$logs/worker-0.log") 2> >(tee -a "$logs/worker-0.log" >&2) &
  else
    TF_CONFIG="$config" "$python" -m cae train --strategy multiworker "$@" \
      > "$logs/worker-$index.log" 2>&1 &
  fi
  pids+=("$!")
done
failed=0
for ((index = 0; index < workers; index++)); do
  if ! wait "${pids[$index]}"; then
    failed=$((failed + 1))
    if [ "$index" -ne 0 ]; then
      echo "worker $index failed; the end of its log:" >&2
      tail -n 5 "$logs/worker-$index.log" >&2
    fi
  fi
done
wait 2>/dev/null || true  # the tee of the chief's output
if [ "$failed" -ne 0 ]; then
  echo "error: $failed of $workers workers failed (logs: $logs)" >&2
  exit 1
fi
rm -rf "$logs"
