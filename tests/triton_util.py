"""Helpers for the deployment tests: a realistic build status, and a real tritonserver on loopback.

The tritonserver binary is the one nvidia-pytriton bundles (pytriton/tritonserver/bin), started
through navbuild.deploy.triton_server, which says how it serves python-backend repositories under
this interpreter; PYTHONPATH lets the stub import navbuild (and these tests' runners).
"""
from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from navbuild import tensors
from navbuild.deploy import triton_server
from navbuild.hashing import digest_file, tree_digest
from navbuild.runner import Runner, output_names

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "examples/vision/model.py:build_model"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20
ATOL, RTOL = 1e-4, 1e-3


# -- runners for the tests (the real ones live in navbuild_rules/; these stand in where they are absent) ------
class _TorchRunner(Runner):
    devices = ("cpu",)
    loads_source = False

    def infer_impl(self, feed):
        import torch

        names = list(self.model.inputs) or sorted(feed)
        with torch.inference_mode():
            result = self._module(*[torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names])
        result = result if isinstance(result, (tuple, list)) else (result,)
        return dict(zip(output_names(self.model, len(result)), (r.numpy() for r in result)))


class EagerRunner(_TorchRunner):
    name = "navbuild-test-torch-eager"
    loads_source = True  # it runs model.entry

    def activate_impl(self):
        self._module = self.model.load_entry()


class TorchScriptRunner(_TorchRunner):
    name = "navbuild-test-torchscript"

    def activate_impl(self):
        import torch

        self._module = torch.jit.load(str(self.artifact_dir / "model.pt"), map_location="cpu")


class ExportRunner(_TorchRunner):
    name = "navbuild-test-torch-export"

    def activate_impl(self):
        import torch

        self._module = torch.export.load(str(self.artifact_dir / "model.pt2")).module()


class OrtRunner(Runner):
    name = "navbuild-test-onnxruntime"
    loads_source = False

    def activate_impl(self):
        import onnxruntime

        self._session = onnxruntime.InferenceSession(str(self.artifact_dir / "model.onnx"),
                                                     providers=["CPUExecutionProvider"])

    def infer_impl(self, feed):
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feed)))


TEST_RUNNERS = {"torch-eager": EagerRunner, "torchscript": TorchScriptRunner,
                "torch-export": ExportRunner, "onnxruntime": OrtRunner}


def runner_names() -> dict[str, str]:
    """Runner kind -> the registered runner to use: the real one if navbuild_rules/ has it, else ours."""
    from navbuild.engine.registry import default_registry

    registry = default_registry()
    chosen = {}
    for kind, cls in TEST_RUNNERS.items():
        if kind in registry.runners:
            chosen[kind] = kind
        else:
            registry.runners.setdefault(cls.name, cls)
            chosen[kind] = cls.name
    return chosen


# -- a realistic build status -----------------------------------------------------------------
def _target(out: Path, model: str, name: str, fmt: str, runner: str | None, *, precision="fp32",
            device="cpu", device_bound=False, status="built", reason=None, profile=None) -> dict[str, Any]:
    folder = out / model / name
    folder.mkdir(parents=True, exist_ok=True)
    files = {p.relative_to(folder).as_posix(): digest_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file()} if status == "built" else {}
    return {"target": f"{model}:{name}", "format": fmt, "precision": precision, "rule": fmt, "rule_version": "1",
            "key": tree_digest({"key": name}), "digest": tree_digest(files) if status == "built" else None,
            "device": device, "device_bound": device_bound, "portable": not device_bound, "runner": runner,
            "files": files, "dir": str(folder), "status": status, "reason": reason,
            "correctness": ({"passed": True, "failures": [], "samples": 3,
                             "outputs": {"logits": {"max_abs": 1e-6, "max_rel": 1e-5, "atol": ATOL, "rtol": RTOL,
                                                    "passed": True}}}
                            if status == "built" else None),
            "profile": profile, "metadata": {}}


def _profile(throughputs: dict[int, float], runner: str) -> dict[str, Any]:
    """A profile as navbuild.measure.profiling writes it (format navbuild-profile/1)."""
    def point(batch: int, throughput: float) -> dict[str, Any]:
        ms = 1000.0 * batch / throughput
        return {"batch_size": batch, "throughput": throughput, "windows": 3, "runs": 30, "stable": True,
                "window_means_ms": [ms] * 3, "std_ms": 0.0, "min_ms": ms, "max_ms": ms,
                **{f"{k}_ms": ms for k in ("mean", "p50", "p90", "p95", "p99")}}

    return {"format": "navbuild-profile/1", "runner": runner, "device": "cpu", "stable": True,
            "stop_reason": "batch_sizes", "max_batch_size_found": None, "oom_batch_size": None,
            "oom_message": None, "wall_s": 1.0, "notes": [], "config": {},
            "points": [point(b, t) for b, t in throughputs.items()]}


def _export(model: Any, example: Any, out: Path) -> None:
    """ONNX, TorchScript and torch.export files of ``model`` under ``out/<target>/``."""
    import torch

    (out / "onnx").mkdir(parents=True)
    torch.onnx.export(model, (example,), str(out / "onnx" / "model.onnx"), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    (out / "torchscript-trace").mkdir(parents=True)
    torch.jit.trace(model, example).save(str(out / "torchscript-trace" / "model.pt"))
    (out / "torch-export").mkdir(parents=True)
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(model, (example,), dynamic_shapes={"image": {0: batch}})
    for node in program.graph.nodes:  # as navbuild_rules/torch normalizes: no source paths in the artifact
        node.meta.pop("stack_trace", None)
    torch.export.save(program, str(out / "torch-export" / "model.pt2"))


def build_status(base: Path) -> dict[str, Any]:
    """Export examples/vision's CNN to ONNX, TorchScript and torch.export under ``base`` and describe
    it as the engine's build status does (docs/status-schema.md)."""
    import torch

    from navbuild.rule import call_entry

    runners = runner_names()
    out = base / "navbuild-out"
    model = call_entry(ROOT, ENTRY)
    generator = torch.Generator().manual_seed(0)
    samples = [{"image": torch.randn(b, 3, 32, 32, generator=generator).numpy()} for b in (1, 2, 4)]
    with torch.inference_mode():
        reference = [{"logits": model(torch.from_numpy(s["image"])).numpy()} for s in samples]
    for folder in ("samples", "reference"):
        (out / "cnn" / folder).mkdir(parents=True, exist_ok=True)
    tensors.save(out / "cnn" / "samples" / "samples.tensors", samples)
    tensors.save(out / "cnn" / "reference" / "reference.tensors", reference)

    example = torch.from_numpy(samples[1]["image"])
    with warnings.catch_warnings():  # the exporters' deprecation notices
        warnings.simplefilter("ignore")
        _export(model, example, out / "cnn")
    (out / "cnn" / "torch").mkdir(parents=True)  # the eager target's recipe, as navbuild_rules/torch writes it
    (out / "cnn" / "torch" / "recipe.json").write_text(json.dumps(
        {"format": "torch-eager", "entry": ENTRY, "precision": "fp32", "dtype": "float32"}, indent=2, sort_keys=True))

    targets = {
        "torch": _target(out, "cnn", "torch", "torch", runners["torch-eager"],
                         profile=_profile({1: 400.0, 4: 900.0, 8: 1000.0, 16: 980.0}, runners["torch-eager"])),
        "onnx": _target(out, "cnn", "onnx", "onnx", runners["onnxruntime"],
                        profile=_profile({1: 900.0, 2: 1500.0, 4: 2100.0, 8: 2300.0, 16: 2250.0, 32: 2600.0},
                                         runners["onnxruntime"])),
        "torchscript-trace": _target(out, "cnn", "torchscript-trace", "torchscript-trace", runners["torchscript"],
                                     profile=_profile({1: 1200.0, 8: 1800.0}, runners["torchscript"])),
        "torch-export": _target(out, "cnn", "torch-export", "torch-export", runners["torch-export"]),
        "trt-fp16": _target(out, "cnn", "trt-fp16", "trt", "tensorrt", precision="fp16", device="cuda",
                            device_bound=True, status="skipped", reason="no CUDA GPU on this machine"),
    }
    return {
        "schema": "navbuild-status/1", "project": "vision", "root": str(ROOT),
        "machine": {"python": "3.11", "platform": "Linux", "cpu": "test cpu", "gpus": [],
                    "tools": {"torch": torch.__version__}},
        "models": {"cnn": {
            "framework": "torch", "entry": ENTRY,
            "inputs": [{"name": "image", "dtype": "float32", "shape": [-1, 3, 32, 32]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
            "max_batch_size": 16, "batch_dim": 0,
            "samples": {"digest": digest_file(out / "cnn" / "samples" / "samples.tensors"),
                        "key": tree_digest({"key": "samples"}), "path": str(out / "cnn" / "samples" / "samples.tensors")},
            "reference": {"digest": digest_file(out / "cnn" / "reference" / "reference.tensors"),
                          "key": tree_digest({"key": "reference"}),
                          "path": str(out / "cnn" / "reference" / "reference.tensors")},
            "targets": targets,
            "selected": {"max-throughput": "onnx", "min-latency": "torchscript-trace"},
        }},
    }


_BUILT: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="session")
def built_status(tmp_path_factory) -> dict[str, Any]:
    """One build per session (the exports take a few seconds); tests get a deep copy."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        _BUILT[key] = build_status(tmp_path_factory.mktemp("build"))
    return _BUILT[key]


@pytest.fixture
def status(built_status) -> dict[str, Any]:
    return json.loads(json.dumps(built_status))


def samples_and_reference(status: dict[str, Any], model: str = "cnn"):
    entry = status["models"][model]
    return tensors.load(entry["samples"]["path"]), tensors.load(entry["reference"]["path"])


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)


# -- a real tritonserver (navbuild.deploy.triton_server) --------------------------------------------
def bundled_install() -> triton_server.Install:
    """The tritonserver that nvidia-pytriton bundles (the tests serve python-backend repositories)."""
    found = triton_server.bundled_dirs()
    if found is None:
        pytest.skip("nvidia-pytriton (which bundles tritonserver) is not installed")
    install = triton_server.Install(binary=found[0] / "bin" / "tritonserver", backends=found[0] / "backends",
                                    libraries=(found[1],), bundled=True)
    if triton_server.python_stub(install) is None:
        pytest.skip(f"nvidia-pytriton ships no python backend stub for Python "
                    f"{sys.version_info.major}.{sys.version_info.minor}")
    return install


def library_path() -> str:
    """LD_LIBRARY_PATH for tritonserver and the python backend stub under this interpreter."""
    found = triton_server.bundled_dirs()
    return triton_server.library_path(bundled_install() if found else None)


free_port = triton_server.free_port


@contextlib.contextmanager
def tritonserver(repo: Path, workdir: Path, *, pythonpath: list[Path]) -> Iterator[str]:
    """Run the bundled tritonserver on ``repo`` (127.0.0.1 only) until its models are ready; yields
    the HTTP address ``127.0.0.1:<port>``."""
    with triton_server.serve(repo, workdir, pythonpath=pythonpath, install=bundled_install()) as url:
        yield url
