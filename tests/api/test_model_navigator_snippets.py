"""Every code snippet of Model Navigator's three reference pages (shared/reference/: the README, the
overview, in-place optimization), run with ``import navbuild as nav`` in place of
``import model_navigator as nav``.

What had to change, and only that: hub downloads become small local models with random weights
(the example CNN for ResNet-50/ResNet-18, a tiny diffusers pipeline for Stable Diffusion, small
torch modules for a pipeline's ``model`` and NeMo's encoder/decoder); ``.to("cuda")`` takes the
machine's device; the ResNet-18 dataloader holds 15 small images instead of 150 of 224 px; paths point into a temporary folder; PyTriton's ``triton.serve()`` (which blocks)
becomes ``triton.run()`` plus a client call, on free ports. ``nav.profile(func=pipeline, dataloader)``
is not valid Python as printed (a positional argument after a keyword one): it runs as
``nav.profile(func=pipeline, dataloader=dataloader)``. The overview page has no code. TensorRT is not
installed here: its targets are asserted skipped, with the reason.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import navbuild as nav
from tests.api.conftest import REPO, copy_example

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROMPT = "a photo of an astronaut riding a horse on mars"


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Each snippet runs in a fresh folder, as the pages' relative paths expect; wrapped modules are
    forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    from navbuild.api.inplace import forget

    forget()


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """The stand-in for the hub's ResNets: the example CNN (random weights, importable by workers)."""
    folder = copy_example("vision", tmp_path_factory.mktemp("resnet"))
    sys.path.insert(0, str(folder))
    sys.modules.pop("model", None)
    import model as vision_model

    yield vision_model.build_model()
    sys.path.remove(str(folder))
    sys.modules.pop("model", None)


def assert_tensorrt_skipped(package) -> None:
    trt = [target for target in package.targets.values() if target.format == "trt"]
    assert trt and all(t.status == "skipped" and t.reason for t in trt), [(t.status, t.reason) for t in trt]


# -- README: Optimize Model, PyTriton, Triton, Navigator Package --------------------------------------
@pytest.fixture(scope="module")
def package(resnet, tmp_path_factory):
    """The README's optimize, once for the README's tests (in a folder of its own)."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    try:
        package = nav.torch.optimize(
            model=resnet.eval(),
            dataloader=[torch.randn(1, 3, 256, 256) for _ in range(10)],
        )
    finally:
        os.chdir(here)
    return package


def test_readme_optimize_model(package):
    built = {name for name, target in package.targets.items() if target.status == "built"}
    assert {"torch", "torchscript-trace", "torch-export", "onnx"} <= built
    assert all(package.targets[name].correct for name in built)
    assert_tensorrt_skipped(package)


def test_readme_triton_model_repository_and_package(package, workspace):
    nav.triton.model_repository.add_model_from_package(
        model_repository_path=pathlib.Path("model_repository"),
        model_name="resnet50",
        package=package,
        strategy=nav.MaxThroughputStrategy(),
    )
    assert (workspace / "model_repository" / "resnet50" / "config.pbtxt").is_file()

    nav.package.save(
        package=package,
        path=workspace / "package.nav"
    )
    assert sorted(nav.package.load(workspace / "package.nav").targets) == sorted(package.targets)


@pytest.mark.slow
def test_readme_deploy_in_pytriton(package, workspace, monkeypatch):
    from pytriton.client import ModelClient
    from pytriton.decorators import batch
    from pytriton.triton import Triton, TritonConfig

    from tests.triton_util import free_port, library_path

    pytriton_adapter = nav.pytriton.PyTritonAdapter(package=package, strategy=nav.MaxThroughputStrategy())
    runner = pytriton_adapter.runner

    runner.activate()

    @batch
    def infer_func(**inputs):
        return runner.infer(inputs)

    http_port = free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port, grpc_address="127.0.0.1",
                          grpc_port=free_port(), allow_metrics=False, exit_timeout_secs=5)
    monkeypatch.setenv("LD_LIBRARY_PATH", library_path())  # the python backend stub's libpython
    image = np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32)
    with Triton(config=config, workspace=workspace / "triton") as triton:
        triton.bind(
            model_name="resnet50",
            infer_func=infer_func,
            inputs=pytriton_adapter.inputs,
            outputs=pytriton_adapter.outputs,
            config=pytriton_adapter.config,
        )
        triton.run()  # the page's triton.serve() blocks
        with ModelClient(f"http://127.0.0.1:{http_port}", "resnet50", init_timeout_s=60) as client:
            served = client.infer_batch(input__0=image)["output__0"]
    expected = package.get_model(target="onnx")(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)
    pytriton_adapter.close()


# -- README: Inplace Optimize and Profiling ------------------------------------------------------------
class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(128, 16)
        self.proj = nn.Linear(16, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(input_ids).mean(1))


class Pipeline:
    """A pipeline with Python around one model, as the README's ``Pipeline(...)``."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = TinyModel().eval()

    def __call__(self, text: str) -> torch.Tensor:
        input_ids = torch.tensor([[ord(c) % 128 for c in text]])
        return self.model(input_ids)


def test_readme_inplace_optimize_and_profile(workspace):
    dataloader = [(1, "<a photo of an astronaut riding a horse on mars>")]  # batch_size, sample

    pipeline = Pipeline()
    expected = pipeline(dataloader[0][1])
    pipeline.model = nav.Module(pipeline.model)

    nav.optimize(pipeline, dataloader)

    pipeline(dataloader[0][1])

    nav.load_optimized()
    assert pipeline.model.optimized_target in ("torchscript-trace", "torch-export", "onnx")
    torch.testing.assert_close(pipeline(dataloader[0][1]), expected, atol=1e-4, rtol=1e-4)

    profiled = nav.profile(func=pipeline, dataloader=dataloader)  # the page's call, made valid Python
    assert {"original", "best", "onnx"} <= set(profiled.runs)
    assert json.loads(profiled.report.read_text())["combinations"]["onnx"]["profile"]["points"]


# -- in-place page: Stable Diffusion --------------------------------------------------------------------
@pytest.fixture
def tiny_sd():
    sys.path.insert(0, str(REPO / "examples" / "stable_diffusion"))
    sys.modules.pop("pipeline", None)
    from pipeline import tiny_pipeline

    yield tiny_pipeline
    sys.path.remove(str(REPO / "examples" / "stable_diffusion"))
    sys.modules.pop("pipeline", None)


@pytest.mark.slow
def test_inplace_stable_diffusion(tiny_sd, stable_diffusion_build, monkeypatch):
    """The page's pipeline, dataloader and optimize, as written (default formats and profile), run in
    the workspace where examples/stable_diffusion ran the same page code in another process (the
    session's shared build, tests/conftest.py; its test checks the images and a load in a new
    process): this second optimize finds every target of the first and builds none again."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    monkeypatch.chdir(stable_diffusion_build[0])  # the page's relative workspace: the current folder

    def get_pipeline():
        # Initialize Stable Diffusion pipeline and wrap modules for optimization
        pipe = tiny_sd()  # StableDiffusionPipeline.from_pretrained(...), tiny, random weights
        pipe = pipe.to(DEVICE)

        pipe.text_encoder = nav.Module(
            pipe.text_encoder,
            name="clip",
            output_mapping=lambda output: BaseModelOutputWithPooling(**output),
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
        # Please mind, the first element in tuple need to be a batch size
        return [(1, "a photo of an astronaut riding a horse on mars")]

    pipe = get_pipeline()
    dataloader = get_dataloader()

    packages = nav.optimize(pipe, dataloader)
    for name in ("clip", "unet", "vae"):
        targets, records = packages[name].targets, packages[name].records
        assert targets["onnx"].status == "cached" and targets["onnx"].correct, (name, targets["onnx"])
        assert_tensorrt_skipped(packages[name])
        assert {"torch", "torchscript-trace", "torch-export", "onnx"} <= set(targets)  # the default formats
        assert [t for t, r in records.items() if r.status == "built"] == [], (name, records)
    nav.load_optimized()
    assert pipe.unet.optimized_target and pipe.vae.decoder.optimized_target


def test_inplace_quantized_module(tiny_sd):
    """The page's quantized UNet: ``precision="int8"`` is a hint that the formats able to build it
    take (the eager torch format runs the quantized module, TensorRT calibrates), the others not."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    def quantize_int_8_bits(module):  # the page assumes one; torch's dynamic quantization here
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, torch.qint8)

    dtype = torch.float16 if DEVICE == "cuda" else torch.float32  # the page loads fp16 for the GPU
    pipe = tiny_sd().to(DEVICE, dtype)

    pipe.unet = quantize_int_8_bits(pipe.unet)

    pipe.text_encoder = nav.Module(
        pipe.text_encoder,
        name="clip",
        output_mapping=lambda output: BaseModelOutputWithPooling(**output),
    )
    pipe.unet = nav.Module(
        pipe.unet,
        name="unet",
        precision="int8",
    )
    pipe.vae.decoder = nav.Module(
        pipe.vae.decoder,
        name="vae",
    )
    config = pipe.unet._config(nav.OptimizeConfig())  # what nav.optimize will build for the unet
    assert config.custom_configs["torch"]["precisions"] == ["int8"]
    assert config.custom_configs["trt"]["precisions"] == ["int8"]
    assert config.custom_configs["onnx"]["precisions"] == ["fp32"]
    assert pipe.unet._self_precision_note.startswith("precision int8: torch, trt;")
    assert pipe.text_encoder._config(nav.OptimizeConfig()).custom_configs is None  # no hint: as configured


def test_inplace_resnet18(resnet):
    import copy

    resnet18 = copy.deepcopy(resnet).to(DEVICE).eval()  # torch.hub.load("pytorch/vision:v0.10.0", "resnet18", ...)

    dataloader = [(1, torch.rand(1, 3, 32, 32, device=DEVICE)) for _ in range(15)]  # the page: 150 (224 px)

    resnet18 = nav.Module(resnet18, name="resnet18")
    packages = nav.optimize(resnet18, dataloader)

    assert packages["resnet18"].targets["onnx"].correct
    nav.load_optimized()
    assert resnet18.optimized_target is not None
    image = dataloader[0][1]
    torch.testing.assert_close(resnet18(image), resnet18.__wrapped__(image), atol=1e-4, rtol=1e-4)


# -- in-place page: per-module configuration, custom forward function -----------------------------------
class Speech(nn.Module):
    """The stand-in for NeMo's ASR model: an encoder and a decoder called by Python around them."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(8, 8)
        self.decoder = nn.Linear(8, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(features)))


def test_inplace_per_module_configuration():
    pipe = Speech().eval()
    dataloader = [(2, torch.randn(2, 8))]

    pipe.encoder = nav.Module(pipe.encoder, name="encoder")
    pipe.encoder.optimize_config = nav.OptimizeConfig(
        target_formats=(
            nav.Format.TENSORRT,
        ),
        runners=(
            "TensorRT",
        )
    )

    pipe.decoder = nav.Module(pipe.decoder, name="decoder")
    pipe.decoder.optimize_config = nav.OptimizeConfig(
        target_formats=(
            nav.Format.TENSORRT,
            nav.Format.ONNX,
        ),
        runners=(
            "TensorRT",
            "OnnxCUDA",  # try also other runner
        )
    )

    packages = nav.optimize(pipe, dataloader)
    assert list(packages["encoder"].targets) == ["trt-fp32", "onnx"]  # onnx: TensorRT's input
    assert list(packages["decoder"].targets) == ["trt-fp32", "onnx"]
    for package in packages.values():
        assert_tensorrt_skipped(package)  # TensorRT is not installed here
    onnx = packages["decoder"].status["targets"]["onnx"]
    assert onnx["device"] == "cuda"  # OnnxCUDA: ONNX Runtime's CUDA provider
    if DEVICE == "cpu":  # the portable file is exported; its check needs the CUDA provider
        assert packages["decoder"].targets["onnx"].correct is None


class SentenceTransformer(nn.Module):

    def forward(self, x):
        return x

    def encode(self, x):
        x1 = self.preprocessing(x)

        x2 = self.forward(x1)  # instead of self(1)

        return x2

    def preprocessing(self, x):
        return x + 1


def test_inplace_custom_forward_function():
    dataloader = [(1, torch.randn(1, 4)) for _ in range(3)]
    config = nav.OptimizeConfig(target_formats=(nav.Format.TORCHSCRIPT, nav.Format.ONNX))

    # wrapping the module for optimization, with non-standard forward function
    pipe = nav.Module(SentenceTransformer(), name="transformer", forward_func="forward")

    # we want to use the encode function as it contains preprocessing step and maybe other important steps
    nav.optimize(pipe.encode, dataloader, config)

    nav.load_optimized()
    assert pipe.optimized_target in ("torchscript-trace", "onnx")
    x = dataloader[0][1]
    torch.testing.assert_close(pipe.encode(x), x + 1)


# -- in-place page: error isolation and the detailed report (environment variables) ---------------------
SCRIPT = """
import json
import multiprocessing as mp

import torch
import navbuild as nav
from tests.api.test_model_navigator_snippets import Pipeline

{guard}
    pipeline = Pipeline()
    pipeline.model = nav.Module(pipeline.model, name="model")
    nav.optimize(pipeline, [(1, "hello")], nav.OptimizeConfig(target_formats=("onnx",), profiling=False))
    print(json.dumps(nav.load_optimized(quiet=True)))
"""


def run_script(folder: pathlib.Path, guard: str, **env: str) -> subprocess.CompletedProcess:
    script = folder / "optimize.py"
    script.write_text(SCRIPT.format(guard=guard))
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    environment.pop("NAVBUILD_USE_MULTIPROCESSING", None)
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=environment, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("guard", ['if __name__ == "__main__":', 'if mp.current_process().name == "MainProcess":'])
def test_error_isolation_guards(workspace, guard):
    result = run_script(workspace, guard)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"model": "onnx"}


def test_navigator_use_multiprocessing_false_runs_an_unguarded_script(workspace):
    unguarded = run_script(workspace, "if True:")  # workers import the script again: refused
    assert json.loads(unguarded.stdout.strip().splitlines()[-1]) == {"model": None}  # its targets failed
    result = run_script(workspace, "if True:", NAVIGATOR_USE_MULTIPROCESSING="False")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"model": "onnx"}


@pytest.mark.parametrize("mode", ["detailed", "logs"])
def test_navigator_console_output(workspace, mode):
    result = run_script(workspace, 'if __name__ == "__main__":', NAVIGATOR_CONSOLE_OUTPUT=mode)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model: steps" in result.stdout and "onnx.check" in result.stdout
    if mode == "logs":  # every build's log on the console as it runs
        assert "navbuild: building model:onnx" in result.stdout + result.stderr


# -- in-place page: PyTorch's torch.compile cache variables --------------------------------------------
@pytest.mark.slow
def test_torch_compile_cache_variables(workspace, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")  # Cache FX graph transformations
    monkeypatch.setenv("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")  # Cache autograd optimizations
    pipe = Speech().eval()
    pipe.decoder = nav.Module(pipe.decoder, name="decoder")
    packages = nav.optimize(pipe, [(2, torch.randn(2, 8))],
                            nav.OptimizeConfig(target_formats=(nav.Format.TORCH_COMPILE,), target_device="cpu",
                                               profiling=False))
    target = packages["decoder"].targets["torch-compile"]
    assert target.status == "built" and target.correct
