"""Seconds per image of diffusers' Stable Diffusion pipeline: as it is, after navbuild's in-place
optimization (``nav.optimize`` + ``nav.load_optimized``, the reference page's three modules), and with
the same three modules compiled by hand with ``torch.compile``; one run, one table.

    PYTHONPATH=. python benchmarks/diffusers_pipeline.py                 # GPU: SD 2.1 sizes, fp16
    PYTHONPATH=. python benchmarks/diffusers_pipeline.py --tiny --device cpu   # CPU: the CI pipeline

The weights are random (Stable Diffusion 2.1's layer sizes, examples/stable_diffusion/pipeline.py):
nothing is downloaded, and seconds per image do not depend on what the weights are. Every variant
starts from the same seeded pipeline and makes the same image; the largest pixel difference from
the eager pipeline's image is printed beside its time. navbuild's build time (first run: exports,
checks, profiles) and torch.compile's warm-up are printed apart from the steady figures.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "stable_diffusion"))

from pipeline import PROMPT, sd21_pipeline, tiny_pipeline  # noqa: E402

DEFAULT_FORMATS = ("torch", "torchscript-trace", "onnx", "trt", "torch-compile")


def make_pipeline(args: argparse.Namespace):
    pipe = (tiny_pipeline if args.tiny else sd21_pipeline)()
    pipe = pipe.to(args.device, torch.float16) if args.fp16 else pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, args: argparse.Namespace) -> np.ndarray:
    generator = torch.Generator(device="cpu").manual_seed(0)
    height = None if args.tiny else args.size
    return pipe(PROMPT, num_inference_steps=args.steps, height=height, width=height, generator=generator,
                output_type="np").images


def seconds_per_image(pipe, args: argparse.Namespace) -> tuple[float, np.ndarray]:
    """Median of ``--runs`` timed images after ``--warmup`` untimed ones (CUDA synchronized)."""
    image = None
    for _ in range(args.warmup):
        image = generate(pipe, args)
    times = []
    for _ in range(args.runs):
        sync(args.device)
        started = time.perf_counter()
        image = generate(pipe, args)
        sync(args.device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), image


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def navbuild_variant(args: argparse.Namespace) -> tuple[object, dict]:
    import navbuild as nav
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    pipe = make_pipeline(args)
    pipe.text_encoder = nav.Module(pipe.text_encoder, name="clip",
                                   output_mapping=lambda output: BaseModelOutputWithPooling(**output))
    pipe.unet = nav.Module(pipe.unet, name="unet")
    pipe.vae.decoder = nav.Module(pipe.vae.decoder, name="vae")
    config = nav.OptimizeConfig(
        target_formats=tuple(args.formats), target_precisions=("fp16",) if args.fp16 else ("fp32",),
        target_device=args.device, workspace=args.workspace, sample_count=args.sample_count,
        optimization_profile={"batch_sizes": [1], "max_trials": 5})
    started = time.perf_counter()
    nav.optimize(pipe, [(1, PROMPT)], config)
    build_s = time.perf_counter() - started
    chosen = nav.load_optimized()
    return pipe, {"build_s": build_s, "modules": chosen}


def compiled_variant(args: argparse.Namespace) -> tuple[object, dict]:
    pipe = make_pipeline(args)
    pipe.text_encoder = torch.compile(pipe.text_encoder)
    pipe.unet = torch.compile(pipe.unet)
    pipe.vae.decoder = torch.compile(pipe.vae.decoder)
    started = time.perf_counter()
    generate(pipe, args)  # the first image compiles
    return pipe, {"build_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny CI pipeline instead of SD 2.1's sizes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp32", dest="fp16", action="store_false", help="fp32 weights (default fp16 on CUDA)")
    parser.add_argument("--steps", type=int, default=25, help="inference steps per image")
    parser.add_argument("--size", type=int, default=512, help="image height and width (SD 2.1 sizes only)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--formats", nargs="+", default=list(DEFAULT_FORMATS),
                        help="navbuild's target formats for every module (those this machine lacks are skipped)")
    parser.add_argument("--sample-count", type=int, default=8, help="recorded calls kept per module")
    parser.add_argument("--workspace", type=Path, default=Path("diffusers-bench-workspace"))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.device.startswith("cuda"):
        args.fp16 = False  # fp16 convolutions are a GPU's business

    rows = []
    eager = make_pipeline(args)
    eager_s, reference = seconds_per_image(eager, args)
    rows.append({"variant": "eager (diffusers as it is)", "s_per_image": eager_s, "difference": 0.0})
    del eager
    gc.collect()
    for label, variant in (("navbuild (nav.optimize + load_optimized)", navbuild_variant),
                           ("torch.compile by hand (3 modules)", compiled_variant)):
        pipe, extra = variant(args)
        seconds, image = seconds_per_image(pipe, args)
        rows.append({"variant": label, "s_per_image": seconds,
                     "difference": float(np.abs(image - reference).max()), **extra})
        del pipe
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"\n{'tiny' if args.tiny else 'SD 2.1 sizes'}, {args.steps} steps, "
          f"{'fp16' if args.fp16 else 'fp32'}, {device}, median of {args.runs}")
    print(f"{'variant':<44}{'s/image':>10}{'speedup':>9}{'max |diff|':>12}{'build s':>10}  modules")
    for row in rows:
        print(f"{row['variant']:<44}{row['s_per_image']:>10.3f}{eager_s / row['s_per_image']:>8.2f}x"
              f"{row['difference']:>12.2e}{row.get('build_s', 0.0):>10.1f}  {row.get('modules', '')}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "steps": args.steps, "fp16": args.fp16,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
