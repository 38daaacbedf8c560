"""navbuild.torch.optimize on the example CNN: a package with statuses, artifacts, runners and a
callable; package files; a new process builds nothing; an edited weight or method rebuilds."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import navbuild
from navbuild.api.package import OptimizedModel
from tests.api.conftest import FAST_PROFILE, copy_example, run_python

FORMATS = ("torchscript-trace", "onnx")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The CNN optimized once for this module's tests (a live object, two formats). Its module stays
    importable while they run: worker processes unpickle the model from it."""
    root = tmp_path_factory.mktemp("cnn")
    folder = copy_example("vision", root)
    sys.path.insert(0, str(folder))
    sys.modules.pop("model", None)
    import model as vision_model

    cnn = vision_model.build_model()
    judged = []

    def verify(outputs, reference):  # every usable target is run on the samples and judged
        judged.append(len(outputs))
        return all(np.abs(o["output__0"] - r["output__0"]).max() < 0.1 for o, r in zip(outputs, reference))

    config = navbuild.OptimizeConfig(target_formats=FORMATS, target_device="cpu", workspace=root,
                                     optimization_profile=FAST_PROFILE, verify_func=verify)
    package = navbuild.torch.optimize(cnn, vision_model.make_samples(), config, name="cnn", quiet=True)
    assert judged == [3, 3] and package.verified == {"torchscript-trace": True, "onnx": True}
    yield root, cnn, vision_model, package
    sys.path.remove(str(folder))
    sys.modules.pop("model", None)


def test_every_target_is_built_checked_and_profiled(built):
    root, _, _, package = built
    targets = package.targets
    assert set(targets) == set(FORMATS)
    for name, target in targets.items():
        assert target.status == "built", (name, target.reason)
        assert target.correct is True
        assert target.throughput and target.throughput > 0
        assert (package.artifacts[name] / "build.log").is_file()
    assert package.records["cnn:reference"].status == "built"
    assert package.selected() in FORMATS and not package.is_empty()


def test_get_model_takes_and_returns_what_the_model_does(built):
    _, cnn, vision_model, package = built
    optimized = package.get_model()
    for sample in vision_model.make_samples():  # batches 1, 2, 4: the exports take each
        with torch.no_grad():
            expected = cnn(sample)
        actual = optimized(sample)
        assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape
        assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-3)


def test_get_runner_by_strategy_name_class_or_target(built):
    _, _, vision_model, package = built
    feed = {"input__0": vision_model.make_samples()[0].numpy()}
    outputs = []
    for kwargs in ({"strategy": navbuild.MinLatencyStrategy()}, {"strategy": "max-throughput"},
                   {"target": "torchscript-trace"}):
        runner = package.get_runner(**kwargs)
        try:
            assert runner.active
            outputs.append(runner.infer(feed)["output__0"])
        finally:
            runner.deactivate()
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], atol=1e-4, rtol=1e-3)


def test_verify_func_keeps_a_refused_target_from_being_offered(built):
    _, _, _, package = built
    assert package.verify(lambda outputs, reference: len(outputs) == len(reference)) == {
        "onnx": True, "torchscript-trace": True}
    package.verified["onnx"] = False
    try:
        assert package.selected() == "torchscript-trace"
    finally:
        package.verified.update({"onnx": True})


def test_package_save_and_load(built, tmp_path):
    _, cnn, vision_model, package = built
    path = navbuild.package.save(package, tmp_path / "cnn.nav")
    with pytest.raises(Exception, match="exists"):
        navbuild.package.save(package, path)
    loaded = navbuild.package.load(path)
    assert loaded.name == "cnn" and set(loaded.targets) == set(FORMATS)
    sample = vision_model.make_samples()[1]
    model = loaded.get_model(target="onnx")
    assert isinstance(model, OptimizedModel)
    with torch.no_grad():
        assert torch.allclose(model(sample), cnn(sample), atol=1e-4, rtol=1e-3)
    model.close()


OPTIMIZE_AGAIN = """
    import json, os, sys
    import torch
    import navbuild
    sys.path.insert(0, "vision")
    import model as vision_model

    def main():
        cnn = vision_model.build_model()
        if os.environ.get("EDIT_WEIGHT"):
            with torch.no_grad():
                cnn.head.bias[0] += 0.5
        config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu",
                                         profiling=False, workspace=".")
        package = navbuild.torch.optimize(cnn, vision_model.make_samples(), config, name="cnn", quiet=True)
        print(json.dumps({name: record.status for name, record in package.records.items()}))

    if __name__ == "__main__":
        main()
"""


def test_a_new_process_builds_nothing_and_edits_rebuild(vision):
    first = run_python(OPTIMIZE_AGAIN, vision)
    assert first["cnn:torchscript-trace"] == "built" and first["cnn:reference"] == "built"
    again = run_python(OPTIMIZE_AGAIN, vision)
    assert set(again.values()) == {"cached"}, again
    in_process = run_python(OPTIMIZE_AGAIN, vision, env={"NAVBUILD_USE_MULTIPROCESSING": "0"})
    assert set(in_process.values()) == {"cached"}, in_process

    weight = run_python(OPTIMIZE_AGAIN, vision, env={"EDIT_WEIGHT": "1"})
    assert weight["cnn:reference"] == "built" and weight["cnn:torchscript-trace"] == "built", weight

    source = vision / "vision" / "model.py"
    source.write_text(source.read_text().replace("return self.head(x.mean(dim=(2, 3)))",
                                                 "return self.head(x.amax(dim=(2, 3)))"))
    method = run_python(OPTIMIZE_AGAIN, vision)
    assert method["cnn:reference"] == "built" and method["cnn:torchscript-trace"] == "built", method
