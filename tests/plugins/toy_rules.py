"""A cheap rule family for scale tests: framework ``toy``, formats ``toy-a`` .. ``toy-d``.

A toy model is ``{"factor": f}``; its outputs are its input times f. Every build writes one small
JSON file, and the runner multiplies with numpy, so 2,000 targets build in a minute and the engine's
own costs (keys, store, doit, summary) are what a scale benchmark measures.

For the GPU tests (fake cards, ``NAVBUILD_FAKE_GPUS``): ``toy-plan`` is device-bound and builds
for ``cuda`` only; a model ``{"factor": f, "sleep": s}`` takes s seconds a build, so that several
run at once; every build and every runner says which cards its process was given
(``CUDA_VISIBLE_DEVICES``, in the build's metadata and the runner's ``runtime_info``).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import ROLE_REFERENCE, BuildContext, Rule
from navbuild.runner import Runner, output_names

np = lazy_import("numpy")

FORMATS = ("toy-a", "toy-b", "toy-c", "toy-d")
ARTIFACT = "model.json"
REFERENCE_FILE = "reference.tensors"


def build_reference(ctx: BuildContext) -> dict[str, Any]:
    from navbuild import tensors

    factor = float(ctx.model.load_entry()["factor"])
    outputs = [{output_names(ctx.model, 1)[0]: next(iter(s.values())) * np.float32(factor)} for s in ctx.samples]
    tensors.save(ctx.out_dir / REFERENCE_FILE, outputs)
    return {"outputs": [{"name": name, "dtype": "float32"} for name in outputs[0]], **given_cards()}


def given_cards() -> dict[str, Any]:
    """What this process was given: its CUDA_VISIBLE_DEVICES (absent: every card)."""
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}


def build_artifact(ctx: BuildContext) -> dict[str, Any]:
    model = ctx.model.load_entry()
    factor = float(model["factor"])
    time.sleep(float(model.get("sleep", 0.0)))
    (ctx.out_dir / ARTIFACT).write_text(json.dumps({"factor": factor, "format": ctx.target}, sort_keys=True))
    return {"factor": factor, **given_cards()}


def build_slow(ctx: BuildContext) -> dict[str, Any]:
    """A build that takes ``seconds`` (a parameter) in five steps, saying each (tests of the progress
    a long build shows)."""
    import time

    steps = 5
    for step in range(1, steps + 1):
        ctx.progress("compiling", f"step {step} of {steps}")
        time.sleep(float(ctx.params["seconds"]) / steps)
    return build_artifact(ctx)


class ToyRunner(Runner):
    name = "toy"

    def activate_impl(self) -> None:
        self.factor = json.loads((self.artifact_dir / ARTIFACT).read_text())["factor"]

    def infer_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        return {output_names(self.model, 1)[0]: next(iter(feed.values())) * np.float32(self.factor)}

    def runtime_info(self) -> dict[str, Any]:
        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


RULES = [Rule(name="reference", version="1", build=build_reference, frameworks=("toy",), role=ROLE_REFERENCE,
              outputs=(REFERENCE_FILE,), description="a toy model's outputs")]
RULES += [Rule(name=fmt, version="1", build=build_artifact, frameworks=("toy",), runner=ToyRunner.name,
               outputs=(ARTIFACT,), description="a toy artifact (one small file)") for fmt in FORMATS]
RULES.append(Rule(name="toy-plan", version="1", build=build_artifact, frameworks=("toy",), runner=ToyRunner.name,
                  outputs=(ARTIFACT,), device_bound=True, devices=("cuda",),
                  description="a toy artifact bound to the GPU type that built it"))
RULES.append(Rule(name="toy-slow", version="1", build=build_slow, frameworks=("toy",), runner=ToyRunner.name,
                  outputs=(ARTIFACT,), params={"seconds": 1.0}, description="a toy artifact that takes a while"))
RUNNERS = [ToyRunner]
