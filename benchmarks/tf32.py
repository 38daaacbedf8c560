"""The TF32 policy on a GPU: fp32 targets pass the default fp32 tolerances, tf32 is built beside them.

Usage (repository root, one command; about 3 minutes on an H100, add --torch-compile for 2 more):
    PYTHONPATH=. python benchmarks/tf32.py
    PYTHONPATH=. python benchmarks/tf32.py --models convnext_tiny --formats torch,onnx --torch-compile

Per model (torchvision's convnext_tiny and resnet50, ``weights=None``: random weights, nothing is
downloaded; seeded), ``navbuild.torch.optimize`` with ``target_device="cuda"``, precisions fp32 and
tf32, formats torch, torchscript-trace, torch-export and onnx (``--torch-compile`` adds
torch-compile), the DEFAULT tolerances, a short profile (batch sizes 1 and 4, 2 s per target), in a
fresh workspace. One row per target: its status, its check and the largest error of each output
(max abs, max rel, against the CPU reference in true fp32), p50 at batch 1 and its best throughput;
then what max-throughput selected.

Before that, the raw effect the policy removes, measured in this process: the model on the GPU with
TF32 off and on (``navbuild_rules/torch/tf32.py`` sets the switches), each against the CPU, as the largest
absolute error and the smallest atol that would pass at the precision's default rtol.

Without a GPU everything runs on the CPU at 64x64 pixels (``--device cpu`` forces it): the fp32
targets build, check and profile, and each tf32 target is reported skipped with the reason. Prints
figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FORMATS = ("torch", "torchscript-trace", "torch-export", "onnx")
PRECISIONS = ("fp32", "tf32")
BATCHES = (1, 4)


def build_model(name: str) -> Any:
    import torch
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


def samples(size: int) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, size, size, generator=generator) for batch in BATCHES]


def needed_atol(actual: Any, expected: Any, rtol: float) -> float:
    """The smallest atol with which ``actual`` passes against ``expected`` at ``rtol``."""
    error = (actual.double() - expected.double()).abs()
    return max(0.0, float((error - rtol * expected.double().abs()).max()))


def raw_effect(name: str, size: int) -> None:
    """The model on the GPU with TF32 off and on, against the CPU."""
    import torch

    from navbuild.measure.settings import DEFAULT_TOLERANCES
    from navbuild_rules.torch import tf32

    model = build_model(name)
    batch = samples(size)[-1]
    with torch.inference_mode():
        tf32.apply("fp32", "cpu")
        expected = model(batch)
        model = model.cuda()
        for precision in PRECISIONS:
            tf32.apply(precision, "cuda")
            actual = model(batch.cuda()).cpu()
            error = float((actual - expected).abs().max())
            rtol = DEFAULT_TOLERANCES[precision]["rtol"]
            print(f"  raw {name} on cuda, TF32 {'on ' if precision == 'tf32' else 'off'}: max abs error "
                  f"{error:.3g} (outputs up to {float(expected.abs().max()):.3g}); atol needed at rtol {rtol:g}: "
                  f"{needed_atol(actual, expected, rtol):.3g} (default atol {DEFAULT_TOLERANCES[precision]['atol']:g})")
    tf32.apply("fp32", "cpu")


def optimize(name: str, device: str, size: int, formats: list[str], workspace: Path) -> Any:
    import navbuild
    import navbuild.torch

    config = navbuild.OptimizeConfig(
        target_formats=formats, target_precisions=PRECISIONS, target_device=device, workspace=workspace,
        optimization_profile={"batch_sizes": list(BATCHES), "budget_s": 2.0})
    return navbuild.torch.optimize(build_model(name), samples(size), config, name=name, quiet=True)


def report(package: Any) -> None:
    rows = [("target", "status", "check", "max abs", "max rel", "p50 b1 ms", "best samples/s")]
    for name, target in package.targets.items():
        entry = (package.status.get("targets") or {}).get(name) or {}
        correctness = entry.get("correctness") or {}
        outputs = correctness.get("outputs") or {}
        max_abs = max((o.get("max_abs", 0.0) for o in outputs.values()), default=None)
        max_rel = max((o.get("max_rel", 0.0) for o in outputs.values()), default=None)
        check = "-" if target.correct is None else ("pass" if target.correct else "FAIL")
        rows.append((name, target.status, check, _num(max_abs), _num(max_rel), _num(target.latency_ms),
                     _num(target.throughput)))
        why = (correctness.get("failures") or [None])[0] or (target.reason if target.status != "built" else None)
        if why:
            rows.append(("", f"  {why}"))
    widths = [max(len(row[i]) for row in rows if len(row) > 2) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    try:
        print(f"  max-throughput selects: {package.selected('max-throughput')}")
    except Exception as exc:  # nothing usable: say why
        print(f"  max-throughput selects nothing: {exc}")


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="convnext_tiny,resnet50")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--torch-compile", action="store_true", help="torch-compile targets too")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--workspace", type=Path, default=None, help="default: a fresh temporary folder")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    device = ("cuda" if gpu else "cpu") if args.device == "auto" else args.device
    size = 224 if device == "cuda" else 64
    formats = args.formats.split(",") + (["torch-compile"] if args.torch_compile else [])
    print(f"torch {torch.__version__}; device {device}"
          + (f" ({torch.cuda.get_device_name(0)}, compute capability "
             f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))})" if gpu else " (no GPU)")
          + f"; images {size}x{size}, batches {BATCHES}; default tolerances")
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="navbuild-tf32-"))
    for name in args.models.split(","):
        print(f"\n== {name}")
        if device == "cuda":
            raw_effect(name, size)
        started = time.perf_counter()
        package = optimize(name, device, size, formats, workspace)
        print(f"  navbuild.torch.optimize: {time.perf_counter() - started:.0f} s (workspace {workspace})")
        report(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
