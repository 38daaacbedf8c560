"""What the machine is: CPU, GPU and tool versions, read without importing a framework.

Device-bound targets (a TensorRT plan, an AOTInductor package, a compile cache) put the device
fingerprint in their key; portable ones never do. ``NAVBUILD_DEVICE_FINGERPRINT`` replaces the
measured device fingerprint for every device-bound target (to pin a CI fleet to one identity, or
to test invalidation).
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from typing import Any

OVERRIDE_ENV = "NAVBUILD_DEVICE_FINGERPRINT"
CPU_FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                         "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve")


@lru_cache(maxsize=None)
def tool_version(distribution: str) -> str | None:
    """Installed version of a distribution, from its metadata (no import)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def tool_versions(distributions: tuple[str, ...]) -> dict[str, str | None]:
    return {name: tool_version(name) for name in distributions}


@lru_cache(maxsize=1)
def cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"arch": platform.machine(), "system": platform.system(), "model": None, "flags": []}
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and info["model"] is None:
            info["model"] = value.strip()
        elif key in ("flags", "Features") and not info["flags"]:
            present = set(value.split())
            info["flags"] = [flag for flag in CPU_FLAGS_OF_INTEREST if flag in present]
    return info


@lru_cache(maxsize=1)
def gpus() -> list[dict[str, Any]]:
    """GPUs seen by nvidia-ml-py, torch (only when already imported) or nvidia-smi."""
    return _gpus_from_nvml() or _gpus_from_torch() or _gpus_from_smi()


def gpu_present() -> bool:
    if os.environ.get("NAVBUILD_NO_GPU"):
        return False
    if not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") or "torch" in sys.modules):
        return False
    return bool(gpus())


def _gpus_from_nvml() -> list[dict[str, Any]]:
    try:
        import pynvml  # nvidia-ml-py: small, no framework
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            found.append({"name": _text(pynvml.nvmlDeviceGetName(handle)), "capability": f"{major}.{minor}",
                          "driver": driver, "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}"})
        return found
    finally:
        pynvml.nvmlShutdown()


def _gpus_from_torch() -> list[dict[str, Any]]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        found.append({"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}",
                      "driver": None, "cuda": torch.version.cuda})
    return found


def _gpus_from_smi() -> list[dict[str, Any]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        result = subprocess.run([smi, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    cuda = None
    if "CUDA Version:" in header:
        cuda = header.split("CUDA Version:")[1].split()[0]
    found = []
    for line in result.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "capability": parts[1], "driver": parts[2], "cuda": cuda})
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def device(kind: str) -> dict[str, Any]:
    """The fingerprint that a device-bound target on ``kind`` ("cpu"/"cuda") is keyed by."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        try:
            return {"override": json.loads(override)}
        except json.JSONDecodeError:
            return {"override": override}
    if kind == "cuda":
        found = gpus()
        return {"gpu": found[0] if found else None, **tool_versions(device_tools())}
    return {"cpu": cpu()}


def device_tools() -> tuple[str, ...]:
    """Distributions that rules declare part of a GPU's identity (``Rule.device_tools``)."""
    from navbuild.engine.registry import default_registry

    return default_registry().device_tools()


def machine(tools: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything, for reports and the package manifest; ``tools``: the distributions to report."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu(),
            "gpus": gpus() if gpu_present() else [], "tools": tool_versions(tuple(tools))}


class MachineInfo:
    """Cheap, framework-free answers about this machine (cached per process)."""

    def __init__(self) -> None:
        self._modules: dict[str, bool] = {}
        self._cuda: bool | None = None

    def has_module(self, name: str) -> bool:
        if name not in self._modules:
            self._modules[name] = importlib.util.find_spec(name) is not None
        return self._modules[name]

    def has_cuda(self) -> bool:
        if self._cuda is None:
            self._cuda = gpu_present()
        return self._cuda

    def cuda_capability(self) -> tuple[int, int] | None:
        """The compute capability of the first GPU, ``(8, 0)`` for an A100; None without a GPU."""
        if not self.has_cuda():
            return None
        try:
            major, minor = str(gpus()[0]["capability"]).split(".")
            return int(major), int(minor)
        except (IndexError, KeyError, ValueError):
            return None
