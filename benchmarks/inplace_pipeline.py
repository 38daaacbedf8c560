"""In-place optimization of examples/pipeline: a first and a second `navbuild.optimize`, each in a
fresh process on one workspace, in the same run.

Usage: python benchmarks/inplace_pipeline.py [--jobs 1] [--repeat 3] [--device cuda]
Prints, per run: the wall time of the process, of `navbuild.optimize` and of `load_optimized`,
how many targets were built and found cached, and the import time of torch alone for comparison.
Model Navigator redoes every export, conversion, check and profile on every run (its documented
behaviour); here the second run builds nothing. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipeline" / "optimize.py"


def run(workspace: Path, report: Path, jobs: int, device: str) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(EXAMPLE), "--workspace", str(workspace), "--jobs", str(jobs),
                             "--device", device, "--report", str(report)], capture_output=True, text=True,
                            cwd=EXAMPLE.parent)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"the example failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    figures = json.loads(report.read_text())
    figures["process_s"] = wall
    figures["built"] = sum(1 for s in figures["statuses"].values() if s == "built")
    figures["cached"] = sum(1 for s in figures["statuses"].values() if s == "cached")
    return figures


def torch_import_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeat", type=int, default=3, help="second runs to time (each a new process)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        first = run(workspace, Path(tmp) / "first.json", args.jobs, args.device)
        seconds = [run(workspace, Path(tmp) / f"second-{i}.json", args.jobs, args.device) for i in range(args.repeat)]
    imports = [torch_import_s() for _ in range(args.repeat)]
    print(f"device {args.device}, jobs {args.jobs}")
    print(f"{'run':<8} {'process':>9} {'optimize':>9} {'load_optimized':>15} {'built':>6} {'cached':>7}")
    for label, figures in [("first", first)] + [(f"second{i + 1}", f) for i, f in enumerate(seconds)]:
        print(f"{label:<8} {figures['process_s']:>8.2f}s {figures['optimize_s']:>8.2f}s "
              f"{figures['load_optimized_s']:>14.2f}s {figures['built']:>6} {figures['cached']:>7}")
    median = statistics.median
    print(f"second run, median of {args.repeat}: optimize {median(f['optimize_s'] for f in seconds):.2f} s, "
          f"load_optimized {median(f['load_optimized_s'] for f in seconds):.2f} s, process "
          f"{median(f['process_s'] for f in seconds):.2f} s (python -c 'import torch': {median(imports):.2f} s)")
    print("Model Navigator: every run exports, converts, checks and profiles every module again.")


if __name__ == "__main__":
    main()
