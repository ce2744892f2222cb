#!/usr/bin/env bash
# The GPU check, one prepared script that fits in 8 minutes on a GPU machine:
#   1. cae training (live progress on) vs a bare Model.fit, float32      (~3 min)
#   2. the same in mixed precision (--precision mixed_float16)            (~2.5 min)
#   3. decode latency of one latent code: compiled Decoder vs call vs predict (~30 s)
# Each step has its own time limit, so one slow step cannot eat the others' time.
#
#   bash bench/gpu.sh            # with the project's .venv (or PYTHON=/path/to/python)
#
# It prints what each bench prints (medians, ratios, the devices TensorFlow sees) and installs
# nothing: TensorFlow must see the GPU already (`pip install tensorflow[and-cuda]` on the machine).
set -uo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python="python3"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
status=0
step() {
  local limit="$1"
  shift
  echo "== $* (limit ${limit}s)"
  timeout "$limit" "$@" || { echo "   exit $?"; status=1; }
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$python" -c 'import tensorflow as tf; print("TensorFlow", tf.__version__, "GPUs:", tf.config.list_physical_devices("GPU"))'
step 200 "$python" bench/train_throughput.py --images 4500 --epochs 4 --rounds 3
step 170 "$python" bench/train_throughput.py --images 4500 --epochs 4 --rounds 3 --precision mixed_float16
step 60 "$python" bench/decode_latency.py --repeats 200
exit "$status"
