"""Optimize the embedding pipeline in place, then run it with its optimized modules.

    python examples/pipeline/optimize.py [--workspace DIR] [--jobs N] [--device cuda]

A second run builds nothing: every target is found in the store, and the modules load in well
under a second (plus importing torch). Outputs before and after optimization are compared.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import navbuild
from pipeline import TEXTS, EmbeddingPipeline, dataloader

HERE = Path(__file__).resolve().parent


def build_pipeline(device: str = "cpu") -> EmbeddingPipeline:
    pipe = EmbeddingPipeline(device=device)
    pipe.encoder = navbuild.Module(pipe.encoder, name="encoder")
    pipe.head = navbuild.Module(pipe.head, name="head")
    return pipe


def config(workspace: Path, device: str = "cpu") -> navbuild.OptimizeConfig:
    return navbuild.OptimizeConfig(
        target_formats=(navbuild.Format.TORCH, navbuild.Format.TORCHSCRIPT, navbuild.Format.ONNX),
        target_device=device, workspace=workspace,
        optimization_profile={"batch_sizes": [1], "window_size": 10, "min_trials": 3, "max_trials": 5})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=HERE / "workspace")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the pipeline and its targets run")
    parser.add_argument("--report", type=Path, help="also write the figures and every target's status as JSON")
    args = parser.parse_args(argv)

    pipe = build_pipeline(args.device)
    batches = [sample[0] for _, sample in dataloader()]
    before = [pipe(batch) for batch in batches]
    started = time.perf_counter()
    packages = navbuild.optimize(pipe, dataloader(), config(args.workspace, args.device), jobs=args.jobs)
    optimized_s = time.perf_counter() - started
    started = time.perf_counter()
    navbuild.load_optimized()
    loaded_s = time.perf_counter() - started
    after = [pipe(batch) for batch in batches]
    error = max((a - b).abs().max().item() for a, b in zip(after, before))
    pipe(TEXTS)  # a batch of 6: larger than any recorded one, so it runs the original code
    print(f"optimize: {optimized_s:.2f} s, load_optimized: {loaded_s:.2f} s")
    for module in (pipe.encoder, pipe.head):
        print(f"{module.name}: runs {module.optimized_target or 'its original code'} "
              f"({module.fallbacks} calls outside the recorded shapes ran the original code)")
    print(f"largest difference from the original pipeline: {error:.2e}")
    if args.report:
        statuses = {name: record.status for package in packages.values() for name, record in package.records.items()}
        args.report.write_text(json.dumps({"optimize_s": optimized_s, "load_optimized_s": loaded_s, "error": error,
                                           "statuses": statuses}, indent=2))
    return 0 if error < 1e-3 else 1


if __name__ == "__main__":  # worker processes import this file: optimize only in the main process
    sys.exit(main())
