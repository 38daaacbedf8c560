#!/usr/bin/env bash
# The GPU example build, as run on the lent H100/H200 (python3 with torch there; doit carried in .whl/).
# Usage: bash benchmarks/gpu_run.sh TARGET_OR_MODEL...   (figures and logs go to $OUT, default gpu-out/)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c "import doit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
[ -d /tmp/ortgpu-site ] && export PYTHONPATH=/tmp/ortgpu-site:${PYTHONPATH:-}
export PYTHONPATH=$PWD:${PYTHONPATH:-}
cfg=examples/navbuild-gpu.toml
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, onnxruntime as ort; print('torch', torch.__version__, torch.cuda.get_device_name(), '| onnxruntime', ort.__version__, ort.get_available_providers())"
} | tee -a "$OUT/machine.txt"
for words in "$@"; do
  tag=$(echo "$words" | tr ' :' '__')
  start=$SECONDS
  python3 -m navbuild.cli -c "$cfg" $words --json "$OUT/$tag.json" > "$OUT/$tag.log" 2>&1
  rc=$?
  echo "navbuild $words: exit $rc in $((SECONDS - start)) s" | tee -a "$OUT/machine.txt"
  python3 benchmarks/figures.py "$OUT/$tag.json" | tee -a "$OUT/figures.txt"
done
