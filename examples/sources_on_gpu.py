"""The TensorFlow, JAX and ONNX-file examples built on a GPU: one run that prints every figure.

    python examples/sources_on_gpu.py            # from the repository root, PYTHONPATH set to it

Each example is copied to a temporary folder, its targets moved to ``device = "cuda"``, and built
with ``navbuild all``. Printed per target: status, reason (a skip or a failure), and for a profile
the p50 latency and throughput at each batch size. What needs a TensorFlow built with TensorRT
(tf-trt), TensorRT itself (trt) or a CUDA jaxlib / onnxruntime-gpu is reported as skipped with the
reason where it is missing; nothing is faked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ("onnx_file", "tensorflow", "jax")


def build(name: str, base: Path) -> int:
    root = base / name
    shutil.copytree(REPO / "examples" / name, root,
                    ignore=shutil.ignore_patterns("navbuild-out", ".navbuild", "__pycache__"))
    config = root / "navbuild.toml"
    config.write_text(config.read_text().replace('device = "cpu"', 'device = "cuda"'))
    report = root / "run.json"
    code = subprocess.call([sys.executable, "-m", "navbuild.cli", "--config", str(config), "--json", str(report),
                            "-q", "all"])
    records = json.loads(report.read_text()) if report.exists() else {}
    print(f"\n== examples/{name}: navbuild all exited {code}")
    for target, record in sorted(records.items()):
        line = f"{target:40} {record['status']:8} {record.get('reason') or ''}"
        print(line.rstrip())
        for point in (record.get("metadata") or {}).get("points", []):
            print(f"{'':42}batch {point['batch_size']:3}: p50 {point['p50_ms']:.3f} ms, "
                  f"{point['throughput']:.1f} samples/s{'' if point.get('stable', True) else ' (not stable)'}")
    return code


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="navbuild-sources-gpu-"))
    try:
        return max(build(name, base) for name in EXAMPLES)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
