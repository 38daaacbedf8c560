"""examples/stable_diffusion: diffusers' own Stable Diffusion pipeline (tiny configurations, random
weights, no download) optimized in place as Model Navigator's page does it. The images equal the
original pipeline's within the example's tolerance, and a new process that only calls
load_optimized() finds every module's targets in the store.

The first run is the session's shared build (tests/conftest.py); the page's snippet test
(tests/api/test_model_navigator_snippets.py) optimizes the same pipeline again in that workspace
and asserts that the second run builds nothing."""
from __future__ import annotations

import pytest

from tests.stable_diffusion import TOLERANCE, run_example


@pytest.mark.slow
def test_stable_diffusion_pipeline_optimizes_in_place(stable_diffusion_build):
    workspace, first = stable_diffusion_build
    assert set(first["loaded"]) == {"clip", "unet", "vae"}
    assert all(target in ("torchscript-trace", "onnx") for target in first["loaded"].values()), first["loaded"]
    assert {"unet:onnx", "unet:onnx.check", "vae:torchscript-trace", "clip:onnx"} <= set(first["built"])
    assert first["difference"] <= TOLERANCE and first["fallbacks"] == {"clip": 0, "unet": 0, "vae": 0}

    loaded = run_example(workspace, "--load-only")  # a new process, no optimize in it
    assert loaded["built"] == [] and loaded["loaded"] == first["loaded"] and loaded["difference"] <= TOLERANCE
    assert loaded["fallbacks"] == {"clip": 0, "unet": 0, "vae": 0}
