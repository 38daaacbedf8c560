"""File names of the tensorrt family's artifacts, and how each is loaded (Polygraphy's ``loader.py``).

``build.py`` writes these files; ``runner.py`` loads them with the functions below. Neither imports
the other. TensorRT and onnxruntime are imported lazily, where a plan or a session is loaded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import Skip
from navbuild_rules.onnx.loader import ONNX_FILE
from navbuild_rules.tensorrt import config

onnxruntime = lazy_import("onnxruntime")

PLAN_FILE = "model.plan"
BUILD_INFO = "build.json"  # what the output was built from; the canonical digest of trt and ort-trt
TIMING_CACHE = "timing.cache"
ORT_ENGINE_DIR = "trt_engines"
ORT_TRT = "TensorrtExecutionProvider"
ORT_CUDA = "CUDAExecutionProvider"

__all__ = ["ONNX_FILE", "PLAN_FILE", "BUILD_INFO", "TIMING_CACHE", "ORT_ENGINE_DIR", "ORT_TRT", "ORT_CUDA",
           "import_tensorrt", "deserialize_plan", "read_build_info", "ort_trt_options", "ort_session"]


def import_tensorrt() -> Any:
    """The tensorrt module; Skip with the reason when this machine cannot import it."""
    try:
        import tensorrt
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            raise Skip("tensorrt is not installed") from None
        raise Skip(f"tensorrt cannot be imported: {exc}") from None
    except ImportError as exc:  # installed, but its libraries do not load here
        raise Skip(f"tensorrt cannot be imported: {exc}") from None
    return tensorrt


def deserialize_plan(trt: Any, runtime: Any, artifact_dir: Path) -> Any:
    """The engine in ``artifact_dir/PLAN_FILE``, or None when TensorRT cannot read it here."""
    return runtime.deserialize_cuda_engine((Path(artifact_dir) / PLAN_FILE).read_bytes())


def read_build_info(artifact_dir: Path) -> dict[str, Any]:
    return json.loads((Path(artifact_dir) / BUILD_INFO).read_text())


def ort_trt_options(engine_dir: Path, timing_dir: Path | None, precision: str, workspace: int,
                    profile: Mapping[str, config.ShapeRange]) -> dict[str, Any]:
    """TensorRT execution provider options: engine cache in ``engine_dir``, timing cache, profile."""
    options: dict[str, Any] = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(engine_dir),
                               "trt_max_workspace_size": workspace, **config.ort_profile_options(profile)}
    if timing_dir is not None:
        options.update(trt_timing_cache_enable=True, trt_timing_cache_path=str(timing_dir))
    if precision == "fp16":
        options["trt_fp16_enable"] = True
    elif precision == "bf16":
        options["trt_bf16_enable"] = True
    return options


def ort_trt_options_from_info(artifact_dir: Path) -> dict[str, Any]:
    """The options an ``ort-trt`` output was built with (its ``build.json``), engines from its cache."""
    info = read_build_info(artifact_dir)
    profile = {name: config.ShapeRange(tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
               for name, r in info["profile"].items()}
    return ort_trt_options(Path(artifact_dir) / ORT_ENGINE_DIR, None, info["precision"], info["workspace"], profile)


def ort_session(path: Path, providers: list[Any]) -> Any:
    return onnxruntime.InferenceSession(str(path), providers=providers)
