"""What a Model Navigator user writes works under ``import navbuild as nav`` (issue 26): options as
keywords, the PyTriton adapter and the Triton repository writer over a Package, runner names,
precision as a per-module hint, NAVIGATOR_* variables, load_optimized in a new process, and
profiling an optimized pipeline per combination. Real models, real builds, small profiles."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import navbuild as nav
from navbuild.api import environment, executor
from navbuild.api.precision import hinted
from navbuild.api.project import format_rules
from tests.api.conftest import FAST_PROFILE, copy_example, run_python


@pytest.fixture(scope="module")
def cnn_package(tmp_path_factory):
    """The example CNN optimized with Model Navigator's keyword style (no OptimizeConfig)."""
    root = tmp_path_factory.mktemp("mn")
    folder = copy_example("vision", root)
    sys.path.insert(0, str(folder))
    sys.modules.pop("model", None)
    import model as vision_model

    cnn = vision_model.build_model()
    package = nav.torch.optimize(model=cnn, dataloader=vision_model.make_samples(),
                                 target_formats=(nav.Format.TORCHSCRIPT, nav.Format.ONNX), target_device="cpu",
                                 workspace=root, optimization_profile=FAST_PROFILE, quiet=True)
    yield root, cnn, vision_model, package
    sys.path.remove(str(folder))
    sys.modules.pop("model", None)


# -- 1. OptimizeConfig fields as keywords --------------------------------------------------------------
def test_optimize_takes_config_fields_as_keywords(cnn_package):
    _, _, _, package = cnn_package
    assert set(package.targets) == {"torchscript-trace", "onnx"}
    assert all(t.status == "built" and t.correct for t in package.targets.values())


def test_a_field_given_twice_with_two_values_is_an_error(cnn_package):
    root, cnn, vision_model, _ = cnn_package
    config = nav.OptimizeConfig(target_device="cpu", workspace=root)
    with pytest.raises(nav.ConfigError, match=r"target_device: given as a keyword \('cuda'\) and in config"):
        nav.torch.optimize(cnn, vision_model.make_samples(), config, target_device="cuda")
    with pytest.raises(nav.ConfigError, match="target_formatz: is not an optimize option"):
        nav.torch.optimize(cnn, vision_model.make_samples(), target_formatz=("onnx",))
    with pytest.raises(nav.ConfigError, match="tensorflow model is given as 'file.py:function'"):
        nav.tensorflow.optimize(cnn, vision_model.make_samples())


# -- 2. PyTriton adapter and Triton repository over a Package -----------------------------------------
def test_pytriton_adapter_takes_the_package(cnn_package):
    _, cnn, vision_model, package = cnn_package
    adapter = nav.pytriton.PyTritonAdapter(package=package, strategy=nav.MaxThroughputStrategy())
    try:
        assert adapter.target_name == package.selected(nav.MaxThroughputStrategy())
        assert [(t.name, t.shape) for t in adapter.inputs] == [("input__0", (3, 32, 32))]
        assert [(t.name, t.shape) for t in adapter.outputs] == [("output__0", (10,))]
        assert adapter.config.batching and adapter.config.max_batch_size == 4
        runner = adapter.runner
        runner.activate()
        image = vision_model.make_samples()[1]
        logits = runner.infer({"input__0": image.numpy()})["output__0"]
        np.testing.assert_allclose(logits, cnn(image).detach().numpy(), atol=1e-4)
    finally:
        adapter.close()


def test_add_model_from_package_writes_the_selected_target(cnn_package, tmp_path):
    _, _, _, package = cnn_package
    folder = nav.triton.model_repository.add_model_from_package(
        model_repository_path=tmp_path / "model_repository", model_name="resnet50", package=package,
        strategy=nav.MinLatencyStrategy())
    assert folder == tmp_path / "model_repository" / "resnet50"
    assert 'name: "resnet50"' in (folder / "config.pbtxt").read_text()
    chosen = package.selected(nav.MinLatencyStrategy())
    assert (folder / "1" / {"onnx": "model.onnx", "torchscript-trace": "model.pt"}[chosen]).is_file()
    # the .nav file and the CLI's status dict are taken too
    saved = nav.package.save(package=package, path=tmp_path / "cnn.nav")
    from_file = nav.triton.model_repository.add_model_from_package(tmp_path / "repo2", "cnn", saved,
                                                                   target="onnx")
    assert (from_file / "1" / "model.onnx").is_file()
    status = dict(package.project_status, models={package.name: package.status})
    from_status = nav.triton.model_repository.add_model_from_package(tmp_path / "repo3", "cnn", status,
                                                                     target="torchscript-trace")
    assert (from_status / "1" / "model.pt").is_file()


# -- 3. precision as a hint ----------------------------------------------------------------------------
def test_precision_hint_asks_each_format_for_what_it_can_build():
    known = format_rules("torch")
    config = nav.OptimizeConfig(target_formats=("torch", "onnx", "trt"))
    hinted_config, note = hinted(config, "int8", known)
    custom = hinted_config.custom_configs
    assert custom["torch"]["precisions"] == ["int8"] and custom["trt"]["precisions"] == ["int8"]
    assert custom["trt"]["calibration"] == "samples"  # calibrated on the recorded calls by default
    assert custom["onnx"]["precisions"] == ["fp32"]
    assert note.startswith("precision int8: torch, trt; onnx builds fp32: it builds fp32, fp16, tf32, not int8")
    with pytest.raises(nav.ConfigError, match=r"precision: no format of the request builds int8: onnx \(it builds"):
        hinted(nav.OptimizeConfig(target_formats=("onnx", "torchscript-trace")), "int8", known)


class Scorer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 16)
        self.second = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


class TwoScorers:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.quantized = torch.ao.quantization.quantize_dynamic(Scorer().eval(), {torch.nn.Linear}, torch.qint8)
        self.plain = Scorer().eval()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantized(x) + self.plain(x)


def test_an_int8_module_builds_int8_where_it_can_and_a_refused_one_does_not_stop_the_others(tmp_path, capsys):
    pipe = TwoScorers()
    samples = [(2, (torch.randn(2, 8),)), (1, (torch.randn(1, 8),))]
    expected = [pipe(*sample) for _, sample in samples]
    pipe.quantized = nav.Module(pipe.quantized, name="quantized", precision="int8")
    pipe.plain = nav.Module(pipe.plain, name="plain", precision="int8",
                            optimize_config=nav.OptimizeConfig(target_formats=("onnx",), target_device="cpu"))
    config = nav.OptimizeConfig(target_formats=("torch", "torchscript-trace"), target_device="cpu",
                                workspace=tmp_path, profiling=False)
    try:
        packages = nav.optimize(pipe, samples, config)
        printed = capsys.readouterr().out
        quantized = packages["quantized"].targets
        assert set(quantized) == {"torch-int8", "torchscript-trace"}
        assert quantized["torch-int8"].status == "built" and quantized["torch-int8"].correct
        assert quantized["torch-int8"].precision == "int8" and quantized["torchscript-trace"].precision == "fp32"
        assert "precision int8: torch; torchscript-trace builds fp32" in printed
        assert packages["plain"] is None
        assert "no format of the request builds int8: onnx" in pipe.plain.optimized_reason
        nav.load_optimized(quiet=True)
        for (_, sample), want in zip(samples, expected):
            torch.testing.assert_close(pipe(*sample), want, atol=1e-4, rtol=1e-4)
    finally:
        from navbuild.api.inplace import forget

        forget()


# -- 4. Model Navigator's runner names ----------------------------------------------------------------
def test_runner_names_choose_formats_and_device():
    known = format_rules("torch")
    config = nav.OptimizeConfig(target_formats=(nav.Format.TENSORRT, nav.Format.ONNX, nav.Format.TORCHSCRIPT),
                                runners=("TensorRT", "OnnxCUDA"))
    assert config.formats(known) == ["trt", "onnx"] and config.device() == "cuda"
    assert nav.OptimizeConfig(runners=("OnnxCPU", "TorchScriptCPU")).formats(known) == ["torchscript-trace", "onnx"]
    assert nav.OptimizeConfig(runners=("OnnxCPU", "TensorRT")).device() == "auto"  # two devices: left as asked
    assert nav.OptimizeConfig(runners=("onnxruntime",), target_formats=("onnx", "torch")).formats(known) == ["onnx"]
    with pytest.raises(nav.ConfigError, match=r"(?s)runners: unknown runner 'OnnxGPU'.*TorchCUDA.*OnnxCUDA.*onnxruntime"):
        nav.OptimizeConfig(runners=("OnnxGPU",)).formats(known)
    with pytest.raises(nav.ConfigError, match=r"target_device: is 'cpu', but the runners \['TensorRT'\] run on cuda"):
        nav.OptimizeConfig(runners=("TensorRT",), target_device="cpu").device()
    with pytest.raises(nav.ConfigError, match=r"runners: \['TensorRT'\] run none of the formats \['onnx'\]"):
        nav.OptimizeConfig(runners=("TensorRT",), target_formats=("onnx",)).formats(known)


# -- 7. NAVIGATOR_* environment variables --------------------------------------------------------------
def test_navigator_environment_variables(monkeypatch, cnn_package, capsys):
    monkeypatch.delenv("NAVBUILD_USE_MULTIPROCESSING", raising=False)
    monkeypatch.setenv("NAVIGATOR_USE_MULTIPROCESSING", "False")
    assert executor.isolation_enabled() is False
    monkeypatch.setenv("NAVBUILD_USE_MULTIPROCESSING", "1")  # navbuild's own name wins
    assert executor.isolation_enabled() is True
    monkeypatch.setenv("NAVIGATOR_CONSOLE_OUTPUT", "loud")
    with pytest.raises(nav.ConfigError, match="NAVIGATOR_CONSOLE_OUTPUT: unknown console output 'loud'"):
        environment.console_output()
    root, cnn, vision_model, _ = cnn_package
    monkeypatch.setenv("NAVIGATOR_CONSOLE_OUTPUT", "detailed")
    nav.torch.optimize(cnn, vision_model.make_samples(), target_formats=("onnx",), target_device="cpu",
                       workspace=root, optimization_profile=FAST_PROFILE)
    printed = capsys.readouterr().out
    assert "steps" in printed and "onnx.check" in printed and "onnx.profile" in printed
    monkeypatch.setenv("NAVIGATOR_CONSOLE_OUTPUT", "none")
    nav.torch.optimize(cnn, vision_model.make_samples(), target_formats=("onnx",), target_device="cpu",
                       workspace=root, optimization_profile=FAST_PROFILE)
    assert capsys.readouterr().out == ""


# -- 5 and 6. load_optimized in a new process; profiling the pipeline ----------------------------------
PIPELINE = """
import json, sys
import torch
import navbuild as nav
from pipeline import EmbeddingPipeline, TEXTS, dataloader

if __name__ == "__main__":
    pipe = EmbeddingPipeline()
    texts = TEXTS[1:3]
    before = pipe(texts)
    if "changed" in sys.argv:
        with torch.no_grad():
            pipe.head.proj.weight.mul_(1.5)
    pipe.encoder = nav.Module(pipe.encoder, name="encoder")
    pipe.head = nav.Module(pipe.head, name="head")
    config = nav.OptimizeConfig(target_formats=("torchscript-trace", "onnx"), target_device="cpu",
                                optimization_profile={profile})
    if "optimize" in sys.argv:
        nav.optimize(pipe, dataloader(), config, quiet=True)
    loaded = nav.load_optimized(quiet=True)
    after = pipe(texts)
    result = {{"loaded": loaded, "reasons": {{m.name: m.optimized_reason for m in (pipe.encoder, pipe.head)}},
              "difference": float((after - before).abs().max())}}
    if "profile" in sys.argv:
        profiled = nav.profile(pipe, dataloader(), {profile}, report="profile.yaml")
        result["runs"] = profiled.runs
        result["report"] = str(profiled.report)
        result["after_profile"] = {{m.name: m.optimized_target for m in (pipe.encoder, pipe.head)}}
    print(json.dumps(result))
"""


def test_load_optimized_in_a_new_process_and_profile_per_combination(tmp_path):
    folder = copy_example("pipeline", tmp_path)
    code = PIPELINE.format(profile=json.dumps(FAST_PROFILE))
    run_python(code.replace('"optimize" in sys.argv', "True"), folder, folder)
    fresh = run_python(code, folder, folder)  # a new process: no optimize before load_optimized
    assert fresh["loaded"]["encoder"] in ("torchscript-trace", "onnx") and fresh["loaded"]["head"]
    assert fresh["reasons"] == {"encoder": None, "head": None} and fresh["difference"] < 1e-4

    changed = run_python(code.replace('"changed" in sys.argv', "True"), folder, folder)
    assert changed["loaded"]["head"] is None and changed["loaded"]["encoder"]
    assert changed["reasons"]["head"].startswith("its code or weights changed since its last optimize")

    profiled = run_python(code.replace('"profile" in sys.argv', "True"), folder, folder)
    runs = profiled["runs"]
    assert list(runs)[:2] == ["original", "best"] and {"torchscript-trace", "onnx"} <= set(runs)
    assert runs["original"] == {"encoder": None, "head": None}
    assert runs["onnx"] == {"encoder": "onnx", "head": "onnx"}
    assert profiled["after_profile"] == fresh["loaded"]  # the modules are left as they were
    import yaml

    report = yaml.safe_load((folder / "profile.yaml").read_text())
    assert report["schema"] == "navbuild-pipeline-profile/1" and set(report["combinations"]) == set(runs)
    assert report["combinations"]["onnx"]["profile"]["points"][0]["batch_size"] == 1


@pytest.mark.slow
def test_tensorflow_optimize_takes_an_entry_and_keywords(tmp_path):
    """``nav.tensorflow.optimize`` with Model Navigator's keyword options, a Keras model given as its
    ``file.py:function`` entry (what navbuild.toml declares for TensorFlow)."""
    # not importorskip: TensorFlow imported into this process makes a later import of triton (torch's
    # compiler) segfault; the build itself runs TensorFlow in navbuild's worker processes
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the tensorflow extra is not installed")
    copy_example("tensorflow", tmp_path)
    package = nav.tensorflow.optimize(model="tensorflow/model.py:build_classifier",
                                      dataloader="tensorflow/model.py:classifier_samples",
                                      target_formats=("savedmodel",), target_device="cpu", workspace=tmp_path,
                                      sources=["tensorflow/model.py", "tensorflow/weights.npz"],
                                      max_batch_size=4, profiling=False, quiet=True)
    target = package.targets["savedmodel"]
    assert target.status == "built" and target.correct, (target.status, target.reason)


class Denoiser(torch.nn.Module):
    """A UNet's calling convention: a batch of latents and one timestep without dimensions."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.proj(latents) * timestep.expand(latents.shape[0])[:, None]


def test_a_timestep_without_dimensions_is_recorded_and_served(tmp_path):
    torch.manual_seed(0)
    denoiser = Denoiser().eval()
    calls = [(torch.randn(2, 4), torch.tensor(t)) for t in (999.0, 500.0, 1.0)]
    expected = [denoiser(*call) for call in calls]
    wrapped = nav.Module(denoiser, name="denoiser")
    try:
        packages = nav.optimize(lambda: [wrapped(*call) for call in calls], [()],
                                nav.OptimizeConfig(target_formats=("torchscript-trace", "onnx"), target_device="cpu",
                                                   workspace=tmp_path, profiling=False), quiet=True)
        assert all(t.status == "built" and t.correct for t in packages["denoiser"].targets.values())
        assert nav.load_optimized(quiet=True)["denoiser"] in ("torchscript-trace", "onnx")
        for call, want in zip(calls, expected):
            torch.testing.assert_close(wrapped(*call), want, atol=1e-4, rtol=1e-4)
        assert wrapped.fallbacks == 0
    finally:
        from navbuild.api.inplace import forget

        forget()
