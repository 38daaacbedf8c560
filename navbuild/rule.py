"""What a rule is: a declaration plus one build function (Bazel's rule model).

A rule never touches the store, the keys or doit. It reads the paths that its
BuildContext gives it and writes its outputs into ``ctx.out_dir``. The engine
computes keys, schedules, caches and materializes.
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

SOURCE = "source"  # `consumes` value of a rule that reads the model's own code


@dataclass(frozen=True)
class Needs:
    """What a rule needs from the machine; unmet needs make its target `skipped`."""

    modules: tuple[str, ...] = ()  # importable Python modules, e.g. ("tensorrt",)
    gpu: bool = False  # needs a CUDA device whatever the target's device is
    cuda_when_device_is_cuda: bool = True  # a `device = "cuda"` target needs a GPU

    def unmet(self, device: str, machine: Any) -> str | None:
        """The reason this machine cannot build it, or None.

        ``machine`` answers ``has_module(name)`` and ``has_cuda()`` (the engine's MachineInfo).
        """
        for module in self.modules:
            if not machine.has_module(module):
                return f"{module} is not installed"
        if (self.gpu or (device == "cuda" and self.cuda_when_device_is_cuda)) and not machine.has_cuda():
            return "no CUDA GPU on this machine"
        return None


@dataclass(frozen=True)
class Rule:
    """A conversion step: consumes one upstream format (or the source model), produces files.

    name          format name, also the target name stem: ``onnx`` -> ``cnn:onnx``
    version       bump whenever the bytes it writes for the same inputs change
    build         ``build(ctx: BuildContext) -> dict | None``; writes files into ctx.out_dir and
                  may return metadata (JSON-able) that goes into the manifest
    consumes      ``SOURCE`` or the name of the upstream format whose files it reads
    frameworks    frameworks whose models it accepts when it consumes SOURCE ("torch", ...)
    params        parameters that change its output, name -> default (only these enter its key).
                  The engine fills them from ``[models.<m>.targets.<format>]`` tables, except two it
                  supplies itself when declared: ``max_batch_size`` (the model's) and ``normalize``
                  (make the output byte-reproducible; default True, a per-target option)
    tools         distributions whose installed version enters its key ("torch", "onnx")
    precisions    precisions it can build; the first is its default
    device_bound  output only valid on the device that built it (keyed by the device fingerprint)
    devices       devices it can target ("cpu", "cuda")
    runner        name of the runner that loads and runs its output (see navbuild.runner)
    needs         what the machine must offer
    suffix_default_precision  name the default-precision target ``fmt-fp32`` instead of ``fmt``
    normalized    its output is made byte-reproducible (else `canonical_digest` must be given)
    canonical_digest  optional ``fn(out_dir) -> str`` when bytes cannot be made identical
    validate      optional ``fn(params, precision) -> str | None``: the problem with a target's options
                  as one sentence (config validation shows it before anything builds), or None
    loads_code    loading its output runs code carried in the files (a shared library, compiled GPU
                  kernels, a pickle): a package's or another machine's copy is never imported
    """

    name: str
    version: str
    build: Callable[["BuildContext"], Mapping[str, Any] | None]
    consumes: str = SOURCE
    frameworks: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32",)
    device_bound: bool = False
    devices: tuple[str, ...] = ("cpu", "cuda")
    runner: str | None = None
    needs: Needs = field(default_factory=Needs)
    suffix_default_precision: bool = False
    normalized: bool = True
    canonical_digest: Callable[[Path], str] | None = None
    description: str = ""
    validate: Callable[[Mapping[str, Any], str], str | None] | None = None
    loads_code: bool = False

    def target_suffix(self, precision: str) -> str:
        if precision == self.precisions[0] and not self.suffix_default_precision:
            return self.name
        return f"{self.name}-{precision}"


@dataclass
class ModelSpec:
    """The model as declared in navbuild.toml, with paths resolved against the project root."""

    name: str
    framework: str
    entry: str  # "path/file.py:function"
    root: Path
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    batch_dim: int = 0
    max_batch_size: int = 1
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def load_entry(self) -> Any:
        """Import ``entry`` from its file and call it: returns the live model."""
        return call_entry(self.root, self.entry)


def call_entry(root: Path, entry: str, *args: Any) -> Any:
    """Call ``path/file.py:function`` relative to ``root``; the file is imported by path."""
    path_text, _, func_name = entry.rpartition(":")
    path = (root / path_text).resolve()
    from navbuild.hashing import digest_bytes  # stable across processes, unlike hash()

    module_name = "navbuild_entry_" + path.stem + "_" + digest_bytes(str(path).encode())[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func_name)(*args)


@dataclass
class BuildContext:
    """Everything a rule's build function may use.

    input_dir   the upstream target's files (read-only), None for SOURCE rules
    out_dir     where the rule writes its outputs (empty, private to this build)
    samples     list of samples, each a dict input-name -> numpy array (batch dim first)
    params      the target's parameter values, only those the rule declared
    """

    model: ModelSpec
    target: str
    precision: str
    device: str
    params: Mapping[str, Any]
    out_dir: Path
    input_dir: Path | None
    samples: list[dict[str, Any]]
    log: Callable[[str], None]
    workdir: Path  # scratch space, deleted after the build
    # A persistent folder owned by this rule and this machine's device fingerprint, for caches that
    # only make builds faster (TensorRT timing cache, torch compile cache); never an output.
    cache_dir: Path | None = None

    def input_path(self, name: str) -> Path:
        assert self.input_dir is not None, "this rule consumes the source model"
        return self.input_dir / name

    def copy_input(self, name: str, dest_name: str | None = None) -> Path:
        dest = self.out_dir / (dest_name or name)
        shutil.copyfile(self.input_path(name), dest)
        return dest


class Skip(Exception):
    """Raised by a build function when the target cannot be built here (reason in the message).

    Use it only for facts about the machine or tools (an exporter missing); a model that fails to
    convert is a failure, never a skip.
    """
