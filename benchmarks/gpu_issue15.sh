#!/usr/bin/env bash
# Issue 15 on a lent H100/H200 in ONE command (about 9 minutes; nothing is fetched from the internet):
#   bash benchmarks/gpu_issue15.sh [MODELS]        MODELS: resnet50,encoder (default), or one of them
# 1. the CUDA tests of the fast paths (buckets, channels-last, CUDA graphs, cuDNN autotuner, compile
#    once, ONNX Runtime NHWC) and the existing CUDA tests of the torch and onnx rules;
# 2. benchmarks/vs_hand.py: per model a cold navbuild build of examples/navbuild-gpu.toml's targets,
#    its max-throughput and min-latency picks and the hand-written baselines timed the same way, then
#    the same build warm (all cached) and warm with --force-downstream (graphs compiled: must be 0).
# Prints everything; $OUT (default gpu-out/) gets tests.log, vs_hand.txt, vs_hand.json, logs.tgz.
# Packages as benchmarks/gpu_run.sh: doit from .whl/ when the machine lacks it, onnxruntime-gpu from
# /tmp/ortgpu-site when present. BUDGET_S (default 520) bounds the whole run: vs_hand skips a stage
# that would start after it (and says so); then run the rest in a second command, e.g.
#   SKIP_TESTS=1 BUDGET_S=560 bash benchmarks/gpu_issue15.sh encoder
# VS_HAND_ARGS adds options to vs_hand.py (on a CPU, to try the script: VS_HAND_ARGS=--quick).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}
MODELS=${1:-resnet50,encoder}
BUDGET_S=${BUDGET_S:-520}
mkdir -p "$OUT"
start=$SECONDS
if [ -d .whl ] && ! python3 -c "import doit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
[ -d /tmp/ortgpu-site ] && export PYTHONPATH=/tmp/ortgpu-site:${PYTHONPATH:-}
export PYTHONPATH=$PWD:${PYTHONPATH:-}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  python3 -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())" 2>&1 | tail -1
  nproc
} 2>&1 | tee "$OUT/machine.txt"

if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== 1. CUDA tests"
  timeout 150 python3 -m pytest -q -p no:cacheprovider -k cuda tests/rules/test_fast_cuda.py \
    tests/rules/test_torch_rules.py tests/rules/test_onnx_rules.py > "$OUT/tests.log" 2>&1
  echo "pytest exit $? after $((SECONDS - start)) s"; tail -n 15 "$OUT/tests.log"
fi

echo "== 2. vs_hand.py ($MODELS), $((BUDGET_S - (SECONDS - start))) s left"
rm -rf /tmp/vs-hand && mkdir -p /tmp/vs-hand
python3 benchmarks/vs_hand.py --models "$MODELS" --work /tmp/vs-hand --json "$OUT/vs_hand.json" \
  --budget-s $((BUDGET_S - (SECONDS - start))) --stage-reserve-s 25 ${VS_HAND_ARGS:-} 2>&1 | tee "$OUT/vs_hand.txt"
echo "vs_hand exit ${PIPESTATUS[0]}"

echo "== build logs: graphs compiled per navbuild run, and each torch-compile build's own count"
for log in /tmp/vs-hand/*/*.log; do
  echo "-- $log: $(grep -c . "$log") lines"
done
for run in /tmp/vs-hand/*/*.json; do
  python3 - "$run" <<'EOF'
import json, sys
records = json.load(open(sys.argv[1]))
for name, r in sorted(records.items()):
    md = r.get("metadata") or {}
    if "graphs_compiled" in md:
        print(f"{sys.argv[1].split('/')[-2]}/{sys.argv[1].split('/')[-1]:12} {name:46} {r['status']:7} "
              f"compiled {md['graphs_compiled']} loaded {md.get('graphs_loaded')} in {md.get('compile_seconds')} s")
EOF
done
tar czf "$OUT/logs.tgz" --exclude=.navbuild --exclude=navbuild-out -C /tmp vs-hand 2>/dev/null
echo "done in $((SECONDS - start)) s"
