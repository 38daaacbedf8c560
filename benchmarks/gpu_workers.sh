#!/usr/bin/env bash
# Worker processes and -j on a lent H100/H200 in ONE command (about 6 minutes, nothing fetched):
#   bash benchmarks/gpu_workers.sh
# 1. the CUDA tests of the rules (every build, check and profile now runs in navbuild's worker
#    processes: spawned interpreters, CUDA initialised only there) and the GPU-slot test;
# 2. the repository's navbuild.toml on device "cuda" (profile budget 2 s a target), built cold in
#    fresh folders with -j 1, -j 4 (GPU targets still one at a time: --gpu-jobs 1) and
#    -j 4 --gpu-jobs 2; then the -j 4 folder again, warm. Wall times as a user sees them.
# $OUT (default gpu-out/) gets tests.log and one JSON report per build.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
start=$SECONDS
if [ -d .whl ] && ! python3 -c "import doit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

echo "== 1. CUDA tests (through worker processes)"
timeout 240 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu_slot" tests/rules/test_fast_cuda.py \
  tests/rules/test_torch_rules.py tests/rules/test_onnx_rules.py tests/e2e/test_ray_executor.py > "$OUT/tests.log" 2>&1
echo "pytest exit $? after $((SECONDS - start)) s"; tail -n 8 "$OUT/tests.log"

echo "== 2. cold builds on cuda: -j 1, -j 4, -j 4 --gpu-jobs 2"
build() {  # folder label args...
  local folder=$1 label=$2; shift 2
  local t0=$SECONDS
  timeout 200 python3 -m navbuild.cli --config "$folder/navbuild.toml" -q --json "$OUT/$label.json" all "$@" \
    > "$OUT/$label.txt" 2>&1
  local rc=$?
  python3 - "$OUT/$label.json" "$label" "$rc" "$((SECONDS - t0))" <<'PY'
import json, sys
path, label, rc, seconds = sys.argv[1:]
try:
    records = json.load(open(path))
except OSError:
    records = {}
by = {}
for r in records.values():
    by[r["status"]] = by.get(r["status"], 0) + 1
print(f"{label:22} exit {rc}  {seconds:>4} s  {by}")
PY
}
for spec in "j1:" "j4:-j 4" "j4g2:-j 4 --gpu-jobs 2"; do
  label=${spec%%:*}; args=${spec#*:}
  folder=/tmp/gpuj/$label; rm -rf "$folder"; mkdir -p "$folder"
  cp -r navbuild.toml examples "$folder/"
  sed -i 's/^device = "cpu".*/device = "cuda"/' "$folder/navbuild.toml"
  printf '\n[profile]\nbudget_s = 2\n' >> "$folder/navbuild.toml"
  build "$folder" "$label" $args
done
build /tmp/gpuj/j4 "j4-warm" -j 4
grep -h "failed" "$OUT"/j1.txt | head -5
echo "total $((SECONDS - start)) s"
