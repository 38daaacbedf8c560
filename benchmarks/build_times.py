"""Wall time of a cold `navbuild all`, a no-op `navbuild all`, and a rebuild after a weight edit.

Usage: python benchmarks/build_times.py [--config navbuild.toml] [--repeat 5]
Runs on a copy of the project in a temporary folder; prints figures, asserts nothing.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def navbuild(root: Path, *words: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(root / "navbuild.toml"), "-q",
                             *words], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        sys.exit(f"navbuild failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "navbuild.toml", root / "navbuild.toml")
        cold = navbuild(root, "all")
        noop = [navbuild(root, "all") for _ in range(args.repeat)]
        targets = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(root / "navbuild.toml"),
                                  "list"], capture_output=True, text=True).stdout.count(":")
        import torch

        weights = root / "examples" / "vision" / "weights.pt"
        state = torch.load(weights, weights_only=True)
        state["head.bias"] += 1.0
        torch.save(state, weights)
        rebuild = navbuild(root, "all")
        print(f"project: {REPO / 'navbuild.toml'} (~{targets} targets listed)")
        print(f"cold `navbuild all`:                 {cold:7.2f} s")
        print(f"no-op `navbuild all` (median of {args.repeat}): {statistics.median(noop):7.3f} s "
              f"(min {min(noop):.3f}, max {max(noop):.3f})")
        print(f"rebuild after a cnn weight edit:     {rebuild:7.2f} s")


if __name__ == "__main__":
    main()
