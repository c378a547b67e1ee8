#!/usr/bin/env bash
# One prepared GPU session: the CUDA tests and the GPU benchmarks, each result saved under $OUT.
# Runs from the repository root on a machine that already has torch/timm/scipy/pandas
# (rmtlib is used from the source tree). Usage: OUT=/some/dir bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
step() { echo "=== $*"; timeout 240 "$@" 2>&1 | grep -v -i warning | tail -n 40; }
step python3 -m pytest -q -x -p no:cacheprovider tests/test_spectra.py tests/test_fit.py tests/test_gram.py -k "gpu or cuda or planted or noise or shared"
[ -f tests/test_prune.py ] && step python3 -m pytest -q -p no:cacheprovider tests/test_prune.py tests/test_lowrank.py tests/test_cli_sweep.py -k "cuda or gpu"
step python3 benchmarks/analyze_speed.py --device cuda --skip-ww --repeats 5 --json "$OUT/analyze_vit_base.json"
step python3 benchmarks/eig_strategies.py --device cuda --json "$OUT/eig_strategies_vit_base.json"
step python3 benchmarks/analyze_speed.py --device cuda --skip-ww --repeats 3 --model vit_huge_patch14_224 --json "$OUT/analyze_vit_huge.json"
[ -f benchmarks/prune_speed.py ] && step python3 benchmarks/prune_speed.py --device cuda --json "$OUT/prune_speed.json"
[ -f benchmarks/lowrank_speed.py ] && step python3 benchmarks/lowrank_speed.py --device cuda --batch 64 --json "$OUT/lowrank_speed.json"
exit 0
