"""Model Navigator's Stable Diffusion example under navbuild: diffusers' own pipeline (tiny, random
weights, nothing downloaded), its text encoder, UNet and VAE decoder wrapped in ``navbuild.Module``
as the reference page wraps them, optimized in place, then run again with the optimized modules.

    python examples/stable_diffusion/optimize.py [--workspace DIR] [--device cpu|cuda] [--load-only]

The optimize is the page's: its default formats (torch, torchscript-trace, torch-export, onnx and
TensorRT, skipped without a GPU) and default profile; only the workspace is chosen. A second run builds
nothing. ``--load-only`` skips ``optimize``: ``load_optimized()`` finds what an earlier run built in
the store (a new process), unless a module changed since. The images made before and after are
compared; the last line printed is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

import navbuild as nav
from pipeline import PROMPT, tiny_pipeline

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-3  # largest pixel difference (images in [0, 1]) from the original pipeline's
STEPS = 4  # inference steps of the images compared (the dataloader's call takes the pipeline's default)


def get_pipeline(device: str = "cpu"):
    """The reference page's ``get_pipeline``, on the tiny pipeline."""
    pipe = tiny_pipeline().to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.text_encoder = nav.Module(
        pipe.text_encoder,
        name="clip",
        output_mapping=lambda output: BaseModelOutputWithPooling(**output),  # back to Hugging Face's class
    )
    pipe.unet = nav.Module(
        pipe.unet,
        name="unet",
    )
    pipe.vae.decoder = nav.Module(
        pipe.vae.decoder,
        name="vae",
    )
    return pipe


def get_dataloader():
    return [(1, PROMPT)]  # the first element of each item is the batch size


def get_config(workspace: Path, device: str | None) -> nav.OptimizeConfig:
    """The page's ``nav.optimize(pipe, dataloader)``: every default kept (``device`` None: ``auto``),
    so that the page's snippet run in the same workspace finds this build (its test does)."""
    return nav.OptimizeConfig(workspace=workspace, target_device=device or nav.DeviceKind.AUTO)


def images(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return pipe(PROMPT, num_inference_steps=STEPS, generator=generator, output_type="np").images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=HERE / "workspace")
    parser.add_argument("--device", help="cpu or cuda: where the pipeline and its targets run (default: cuda "
                        "when there is one)")
    parser.add_argument("--load-only", action="store_true", help="no optimize: load what the store holds")
    args = parser.parse_args(argv)

    pipe = get_pipeline(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    before = images(pipe)
    started = time.perf_counter()
    built: list[str] = []
    if not args.load_only:
        packages = nav.optimize(pipe, get_dataloader(), get_config(args.workspace, args.device))
        built = sorted(target for package in packages.values() if package
                       for target, record in package.records.items() if record.status == "built")
    optimized_s = time.perf_counter() - started
    loaded = nav.load_optimized(config=get_config(args.workspace, args.device))
    after = images(pipe)
    difference = float(np.abs(after - before).max())
    modules = {"clip": pipe.text_encoder, "unet": pipe.unet, "vae": pipe.vae.decoder}
    for name, module in modules.items():
        print(f"{name}: runs {module.optimized_target or 'its original code'}"
              + (f" ({module.optimized_reason})" if module.optimized_reason else ""))
    print(f"largest pixel difference from the original pipeline: {difference:.2e} (tolerance {TOLERANCE})")
    print(json.dumps({"loaded": loaded, "built": built, "difference": difference, "optimize_s": optimized_s,
                      "fallbacks": {name: module.fallbacks for name, module in modules.items()}}))
    return 0 if difference <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
