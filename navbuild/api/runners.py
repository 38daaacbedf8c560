"""Model Navigator's runner names (``OptimizeConfig(runners=("TensorRT", "OnnxCUDA"))``) in navbuild's
terms: the formats they run and the device they run on. navbuild's own runner names
(``"onnxruntime"``, ``"torchscript"``; ``navbuild list`` shows them) are accepted as well."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from navbuild.engine.config import ConfigError

LABEL = "OptimizeConfig"  # api/config.py's; it imports this module

# Model Navigator runner -> (navbuild formats it runs, device)
MODEL_NAVIGATOR_RUNNERS: dict[str, tuple[tuple[str, ...], str]] = {
    "TorchCPU": (("torch",), "cpu"),
    "TorchCUDA": (("torch",), "cuda"),
    "TorchCompileCPU": (("torch-compile",), "cpu"),
    "TorchCompileCUDA": (("torch-compile",), "cuda"),
    "TorchScriptCPU": (("torchscript-trace", "torchscript-script"), "cpu"),
    "TorchScriptCUDA": (("torchscript-trace", "torchscript-script"), "cuda"),
    "TorchExportedProgramCPU": (("torch-export",), "cpu"),
    "TorchExportedProgramCUDA": (("torch-export",), "cuda"),
    "OnnxCPU": (("onnx", "onnx-slim"), "cpu"),
    "OnnxCUDA": (("onnx", "onnx-slim", "ort-cuda"), "cuda"),
    "OnnxTensorRT": (("ort-trt",), "cuda"),
    "TensorRT": (("trt",), "cuda"),
    "TorchTensorRT": (("torch-trt",), "cuda"),
    "TensorFlowSavedModelCPU": (("savedmodel",), "cpu"),
    "TensorFlowSavedModelCUDA": (("savedmodel",), "cuda"),
    "TensorFlowTensorRT": (("tf-trt",), "cuda"),
}


def formats_run_by(names: Iterable[str], formats: list[str], known: Mapping[str, Any]) -> list[str]:
    """The ``formats`` that one of the runners ``names`` runs (``known``: format -> rule)."""
    names = list(names)
    _check_known(names, known)
    by_mn = {fmt for name in names for fmt in MODEL_NAVIGATOR_RUNNERS.get(name, ((), ""))[0]}
    kept = [fmt for fmt in formats if fmt in by_mn or getattr(known.get(fmt), "runner", None) in names]
    if not kept:
        raise ConfigError(LABEL, "runners", f"{list(names)} run none of the formats {formats}",
                          "add the formats they run to target_formats, or name their runners")
    return kept


def device_of(names: Iterable[str], device: str) -> str:
    """The device the named Model Navigator runners run on, when ``device`` is ``auto`` and they
    agree; a device given explicitly must be one of theirs."""
    devices = {MODEL_NAVIGATOR_RUNNERS[name][1] for name in names if name in MODEL_NAVIGATOR_RUNNERS}
    if not devices:
        return device
    if device == "auto":
        return devices.pop() if len(devices) == 1 else device
    if device not in devices:
        raise ConfigError(LABEL, "target_device", f"is {device!r}, but the runners {sorted(names)} run on "
                          f"{', '.join(sorted(devices))}", "drop target_device or name runners of that device")
    return device


def _check_known(names: list[str], known: Mapping[str, Any]) -> None:
    ours = {getattr(rule, "runner", None) for rule in known.values()} - {None}
    unknown = [name for name in names if name not in MODEL_NAVIGATOR_RUNNERS and name not in ours]
    if unknown:
        raise ConfigError(LABEL, "runners", f"unknown runner {unknown[0]!r}",
                          f"use Model Navigator's names ({', '.join(MODEL_NAVIGATOR_RUNNERS)}) or navbuild's "
                          f"({', '.join(sorted(ours))})")
