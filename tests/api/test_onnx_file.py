"""navbuild.onnx.optimize: an ONNX file as the source model. It runs where a rule family reads
ONNX-file sources (framework "onnx"); elsewhere test_config_mapping checks the refusal."""
from __future__ import annotations

import importlib.util

import pytest

import navbuild
from navbuild.api.project import reads_framework

pytestmark = pytest.mark.skipif(not reads_framework("onnx"), reason="no rule family reads ONNX-file sources here")


def test_an_onnx_file_is_checked_and_runs(vision):
    import torch

    spec = importlib.util.spec_from_file_location("vision_model_for_onnx", vision / "vision" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cnn, samples = module.build_model(), module.make_samples()
    path = vision / "cnn.onnx"
    torch.onnx.export(cnn, (samples[0],), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
    config = navbuild.OptimizeConfig(target_formats=("onnx",), target_device="cpu", input_names=("image",),
                                     output_names=("logits",), profiling=False, workspace=vision)
    package = navbuild.onnx.optimize(path, samples, config, quiet=True)
    assert package.targets["onnx"].status == "built" and package.targets["onnx"].correct
    runner = package.get_runner(target="onnx")
    try:
        logits = runner.infer({"image": samples[1].numpy()})["logits"]
    finally:
        runner.deactivate()
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(logits), cnn(samples[1]), atol=1e-4)
