"""What the machine is: CPU, GPU and tool versions, read without importing a framework.

Device-bound targets (a TensorRT plan, an AOTInductor package, a compile cache) put the device
fingerprint in their key; portable ones never do. A GPU's fingerprint is its card type (name,
compute capability, driver, CUDA), never its index: two cards of one type build the same keys, and
a profile measured on card 3 holds for card 5. ``NAVBUILD_DEVICE_FINGERPRINT`` replaces the
measured device fingerprint for every device-bound target (to pin a CI fleet to one identity, or
to test invalidation).

The GPUs are those this process may use: ``CUDA_VISIBLE_DEVICES`` is honoured (indices in
nvidia-smi's order, the PCI bus order, or ``GPU-<uuid>``), so a worker pinned to one card sees that
card alone. ``NAVBUILD_FAKE_GPUS`` (tests only: a JSON list of ``{"name", "capability"}``) makes
the process believe in cards it does not have, to test what depends on them without a GPU.
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
FAKE_GPUS_ENV = "NAVBUILD_FAKE_GPUS"  # tests only
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
CARD_TYPE = ("name", "capability", "driver", "cuda")  # what a key holds of a GPU: no index, no uuid
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
    """The GPUs this process may use, seen by nvidia-ml-py, torch (only when already imported) or
    nvidia-smi: each card's type (``CARD_TYPE``) and its ``index`` in nvidia-smi's order (None when
    unknown) and ``uuid``."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        return visible(_fake_gpus(fake), os.environ.get(VISIBLE_ENV))
    found = _gpus_from_nvml()
    if found:
        return visible(found, os.environ.get(VISIBLE_ENV))
    found = _gpus_from_torch()  # torch applies CUDA_VISIBLE_DEVICES itself
    if found:
        return found
    return visible(_gpus_from_smi(), os.environ.get(VISIBLE_ENV))


def visible(found: list[dict[str, Any]], names: str | None) -> list[dict[str, Any]]:
    """The cards of ``found`` (every card of the machine) that ``CUDA_VISIBLE_DEVICES`` names, in
    its order. As CUDA reads it, the list ends at an entry that names no card (``-1``). A MIG
    instance, which navbuild does not map, is the process's current device: a card of no index,
    which nothing pins, typed as the first card."""
    if names is None:
        return found
    chosen: list[dict[str, Any]] = []
    for entry in (part.strip() for part in names.split(",")):
        card = _named(found, entry)
        if card is None:
            if entry.upper().startswith("MIG-") and found and not chosen:
                chosen.append({**found[0], "index": None, "uuid": None})
            break
        if card not in chosen:
            chosen.append(card)
    return chosen


def _named(found: list[dict[str, Any]], entry: str) -> dict[str, Any] | None:
    if entry.isdigit():
        return next((card for card in found if card.get("index") == int(entry)), None)
    if entry.upper().startswith("GPU-"):  # CUDA takes any unique prefix of a uuid
        matches = [card for card in found if str(card.get("uuid") or "").lower().startswith(entry.lower())]
        return matches[0] if len(matches) == 1 else None
    return None


def card_type(card: dict[str, Any]) -> dict[str, Any]:
    """What identifies a card's type: two cards of one type build the same keys."""
    return {field: card.get(field) for field in CARD_TYPE}


def gpu_present() -> bool:
    if os.environ.get("NAVBUILD_NO_GPU"):
        return False
    if FAKE_GPUS_ENV not in os.environ and not (
            os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") or "torch" in sys.modules):
        return False
    return bool(gpus())


def _fake_gpus(text: str) -> list[dict[str, Any]]:
    """``NAVBUILD_FAKE_GPUS`` (tests only): cards this process pretends to have, index by position."""
    try:
        cards = json.loads(text)
        return [{"name": str(card["name"]), "capability": str(card.get("capability", "9.0")),
                 "driver": card.get("driver", "fake"), "cuda": card.get("cuda", "12.8"), "index": index,
                 "uuid": f"GPU-fake-{index}"} for index, card in enumerate(cards)]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f'{FAKE_GPUS_ENV} (tests only) must be a JSON list of {{"name": ...}}: {exc}') from None


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
                          "driver": driver, "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}", "index": index,
                          "uuid": _text(pynvml.nvmlDeviceGetUUID(handle))})
        return found
    finally:
        pynvml.nvmlShutdown()


def _gpus_from_torch() -> list[dict[str, Any]]:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    named = [part.strip() for part in os.environ.get(VISIBLE_ENV, "").split(",")]
    found = []
    for index in range(torch.cuda.device_count()):  # torch's own numbering: the visible ones
        major, minor = torch.cuda.get_device_capability(index)
        physical = int(named[index]) if index < len(named) and named[index].isdigit() else None
        found.append({"name": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}",
                      "driver": None, "cuda": torch.version.cuda,
                      "index": physical if VISIBLE_ENV in os.environ else index, "uuid": None})
    return found


def _gpus_from_smi() -> list[dict[str, Any]]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        result = subprocess.run([smi, "--query-gpu=index,uuid,name,compute_cap,driver_version",
                                 "--format=csv,noheader"],
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
        if len(parts) == 5 and parts[0].isdigit():
            found.append({"name": parts[2], "capability": parts[3], "driver": parts[4], "cuda": cuda,
                          "index": int(parts[0]), "uuid": parts[1]})
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
        found = gpus()  # the first visible card: the one a pinned worker sees
        return {"gpu": card_type(found[0]) if found else None, **tool_versions(device_tools())}
    return {"cpu": cpu()}


def device_tools() -> tuple[str, ...]:
    """Distributions that rules declare part of a GPU's identity (``Rule.device_tools``)."""
    from navbuild.engine.registry import default_registry

    return default_registry().device_tools()


def machine(tools: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything, for reports and the package manifest; ``tools``: the distributions to report."""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu(),
            "gpus": [{**card_type(g), "index": g.get("index")} for g in gpus()] if gpu_present() else [],
            "tools": tool_versions(tuple(tools))}


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
