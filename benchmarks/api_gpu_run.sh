#!/usr/bin/env bash
# The Python API on a GPU machine, in one go (every figure printed; nothing asserted here):
#   1. the in-place pipeline example with its modules and targets on cuda: a first and three second
#      optimize runs, each a new process, plus the import time of torch;
#   2. the same on the CPU, on the same machine, for comparison;
#   3. the API's tests (they pin target_device="cpu", so they say whether the spawned workers and the
#      generated entries behave on that machine's Python and torch).
# Usage: bash benchmarks/api_gpu_run.sh   (from the repository root, with PYTHONPATH set to it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "== in-place pipeline, cuda"
python benchmarks/inplace_pipeline.py --device cuda --repeat 3
echo "== in-place pipeline, cpu"
python benchmarks/inplace_pipeline.py --device cpu --repeat 3
echo "== one run of the example on cuda, with its tables"
workspace=$(mktemp -d)
python examples/pipeline/optimize.py --device cuda --workspace "$workspace"
rm -rf "$workspace"
echo "== API tests"
python -m pytest -q -p no:cacheprovider tests/api
