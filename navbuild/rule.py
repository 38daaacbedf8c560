"""What a rule is: a declaration plus one build function (Bazel's rule model).

A rule never touches the store, the keys or doit. It reads the paths that its
BuildContext gives it and writes its outputs into ``ctx.out_dir``. The engine
computes keys, schedules, caches and materializes.
"""
from __future__ import annotations

import contextlib
import fnmatch
import importlib.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

SOURCE = "source"  # `consumes` value of a rule that reads the model's own code
# A key of a build's metadata: one sentence that a failed correctness check of the artifact adds to
# its first failure (what the build saw that explains a mismatch, e.g. a trace of data-dependent code).
CHECK_HINT = "check_hint"
# Roles: the two rules every model gets, besides the formats it declares. Each writes one tensors
# file (navbuild.tensors), its first declared output; their targets are ``<model>:<role>``.
ROLE_SAMPLES = "samples"  # the sample inputs (one rule for every framework)
ROLE_REFERENCE = "reference"  # the source model's outputs on them (one rule per framework)
ROLES = (ROLE_SAMPLES, ROLE_REFERENCE)
# Engine values: what the engine supplies to a rule beside its own parameters, read through the
# BuildContext (``ctx.max_batch_size``, ``ctx.normalize``, ``ctx.profile_batch_sizes``). A rule
# declares the ones its build reads (``Rule.uses``); exactly those enter its targets' keys.
#   max_batch_size       the model's largest batch (``[models.<m>] max_batch_size``)
#   normalize            make a portable output byte-reproducible (``[models.<m>.targets] normalize``)
#   profile_batch_sizes  the ``[profile] batch_sizes`` (empty when the profile sweeps or is off)
ENGINE_VALUES = ("max_batch_size", "normalize", "profile_batch_sizes")
DEFAULT_MAX_BATCH_SIZE = 1  # a model that declares none takes batches of one
NO_BATCH = 0  # ``max_batch_size = 0``: no batch dimension, shapes as they are (Triton's convention)
# fp32 storage with TensorFloat-32 math in matmuls and convolutions (10-bit mantissa operands, fp32
# accumulation): what Ampere and newer GPUs do by default. An ``fp32`` target runs with TF32 off; a
# ``tf32`` target is the same model built and run with it on, so its speed is measured and chosen apart.
TF32 = "tf32"
TF32_MIN_CAPABILITY = (8, 0)  # Ampere


def tf32_enabled(precision: str) -> bool:
    """Whether a target of ``precision`` runs its float32 matmuls and convolutions in TF32."""
    return precision == TF32


def tf32_unmet(precision: str, device: str, capability: tuple[int, int] | None) -> str | None:
    """Why a target of ``precision`` on ``device`` cannot run here (a GPU of compute ``capability``,
    None without one), or None: a ``tf32`` target needs a CUDA GPU of the Ampere generation or newer."""
    if not tf32_enabled(precision):
        return None
    need = f"TF32 needs an Ampere-or-newer CUDA GPU (compute capability {'.'.join(map(str, TF32_MIN_CAPABILITY))}+)"
    if device != "cuda":
        return f"{need}; this target's device is {device}"
    if capability is None:
        return f"{need}; this machine has none"
    if tuple(capability) < TF32_MIN_CAPABILITY:
        return f"{need}; this GPU's is {'.'.join(map(str, capability))}"
    return None


def repeat_file_name(tensor_file: str) -> str:
    """Where a reference rule keeps a second run of the source model beside its tensors file, when
    the two runs differ (``reference.tensors`` -> ``reference.repeat.tensors``): the checks then
    judge whether an artifact's error is within the source's own non-determinism."""
    stem, dot, suffix = tensor_file.rpartition(".")
    return f"{stem}.repeat.{suffix}" if dot else f"{tensor_file}.repeat"


@dataclass(frozen=True)
class Needs:
    """What a rule needs from the machine; unmet needs make its target `skipped`."""

    modules: tuple[str, ...] = ()  # importable Python modules, e.g. ("tensorrt",)
    gpu: bool = False  # needs a CUDA device whatever the target's device is
    cuda_when_device_is_cuda: bool = True  # a `device = "cuda"` target needs a GPU

    def needs_cuda(self, device: str) -> bool:
        """Whether it needs a CUDA GPU when targeting ``device``."""
        return self.gpu or (device == "cuda" and self.cuda_when_device_is_cuda)

    def unmet(self, device: str, machine: Any) -> str | None:
        """Every reason this machine cannot build it, joined with "; ", or None.

        ``machine`` answers ``has_module(name)`` and ``has_cuda()`` (the engine's MachineInfo).
        """
        reasons = [f"{module} is not installed" for module in self.modules if not machine.has_module(module)]
        if self.needs_cuda(device) and not machine.has_cuda():
            reasons.append("no CUDA GPU on this machine")
        return "; ".join(reasons) or None


@dataclass(frozen=True)
class TritonModel:
    """How Triton serves a rule's output with one of its own backends (no navbuild code on the server).

    backend       Triton's ``backend`` field (``onnxruntime``)
    platform      Triton's ``platform`` field (``onnxruntime_onnx``), None when the backend needs none
    files         the rule's output -> its path under ``<model>/1/``. A key is a file name, or a
                  folder ending in ``/`` whose files keep their paths below the value (also ending
                  in ``/``). The first entry must be in the output; the others are copied when present
    tensor_name   Triton's name of input or output number ``index``: ``"{name}"`` (the model's names),
                  or ``"{name}__{index}"`` for a backend that binds tensors by position (libtorch)
    io_types      ``"artifact"``: the backend feeds the artifact as it is, so the config declares the
                  types the artifact takes (its build metadata's ``input_types``/``output_types``,
                  falling back to the model's); ``"model"``: the model's own types
    accelerators  Triton execution accelerators the backend accepts (``"tensorrt"``)
    """

    backend: str
    platform: str | None
    files: Mapping[str, str]
    tensor_name: str = "{name}"
    io_types: str = "artifact"
    accelerators: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "platform": self.platform, "files": dict(self.files),
                "tensor_name": self.tensor_name, "io_types": self.io_types,
                "accelerators": list(self.accelerators)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TritonModel":
        return cls(backend=str(data["backend"]), platform=data.get("platform"), files=dict(data.get("files") or {}),
                   tensor_name=str(data.get("tensor_name") or "{name}"),
                   io_types=str(data.get("io_types") or "artifact"),
                   accelerators=tuple(data.get("accelerators") or ()))

    def name_of(self, name: str, index: int) -> str:
        return self.tensor_name.format(name=name, index=index)


@dataclass(frozen=True)
class Rule:
    """A conversion step: consumes one upstream format (or the source model), produces files.

    name          format name, also the target name stem: ``onnx`` -> ``cnn:onnx``
    version       bump whenever the bytes it writes for the same inputs change
    build         ``build(ctx: BuildContext) -> dict | None``; writes files into ctx.out_dir and
                  may return metadata (JSON-able) that goes into the manifest
    consumes      ``SOURCE`` or the name of the upstream format whose files it reads
    frameworks    frameworks whose models it serves ("torch", ...): its family's own for a rule that
                  reads the source; empty (any) for a converter. One format name may have several
                  rules (``onnx`` exported from torch, converted from any SavedModel): a model gets
                  the one that serves its framework and whose input its chain of rules reaches
    params        parameters that change its output, name -> default (only these enter its key).
                  The engine fills them from ``[models.<m>.targets.<format>]`` tables. An engine value
                  (``ENGINE_VALUES``) is never a parameter: it is declared in ``uses``
    uses          the engine values (``ENGINE_VALUES``) its build reads from the BuildContext
                  (``ctx.max_batch_size``...); they enter its key. Reading one it does not declare fails
    tools         distributions whose installed version enters its key ("torch", "onnx")
    precisions    precisions it can build; the first is its default
    device_bound  output only valid on the device that built it (keyed by the device fingerprint)
    devices       devices it can target ("cpu", "cuda")
    runner        name of the runner that loads and runs its output (see navbuild.runner)
    needs         what the machine must offer
    suffix_default_precision  name the default-precision target ``fmt-fp32`` instead of ``fmt``
    normalized    its output is made byte-reproducible (else `canonical_digest` must be given)
    canonical_digest  optional ``fn(out_dir) -> str`` when bytes cannot be made identical
    identifies_model  whether the output's digest (its bytes, or its canonical digest) tells which model
                  it was built from: an export holds the graph and weights, a recipe or a config does
                  not. When it does not, the engine mixes the model's identity (source digests and
                  entry, or the upstream's digest) into the output digest, or two models would share
                  one cache entry. None (the default): True for a normalized output, False for a
                  canonical digest
    validate      optional ``fn(params, precision, values) -> str | None``: the problem with a target's
                  options as one sentence (config validation shows it before anything builds), or
                  None; ``values`` holds the engine values it declares in ``uses``
    loads_code    loading its output runs code carried in the files (a shared library, compiled GPU
                  kernels, a pickle): a package's or another machine's copy is never imported
                  (unless the package is signed by a key the project trusts, docs/deploy.md)
    scan          optional ``fn(folder) -> str | None``: reads the output's files (in ``folder``, under
                  their names) as data, without loading or running them, and returns the first thing
                  that would reach outside the model once loaded (an operator that reads or writes
                  files or runs a process, a custom operator, a path out of the folder) as one
                  sentence, or None. A package's copy of an output is imported, and loaded by
                  ``navbuild.package.load``, only after its scan found nothing; an output whose rule
                  declares none is not imported from a package that no trusted key signed
    outputs       the files it writes into ``out_dir``, relative names or ``fnmatch`` patterns
                  (``trt_engines/*``); a build that writes any other file fails. Empty: undeclared
    triton        how Triton serves the output natively (``TritonModel``); None: through Triton's
                  python backend and the rule's runner
    role          ``ROLE_SAMPLES`` or ``ROLE_REFERENCE`` for the two rules every model gets (never
                  declared as formats); None for a format
    base          a portable format that other targets can be rebuilt from: a package carries it
                  (at fp32) whatever was selected
    device_tools  distributions whose version is part of a GPU's identity (TensorRT): they enter the
                  device fingerprint of every device-bound target on a GPU
    variants      searchable parameters: name -> {value: label}. In navbuild.toml such a parameter may
                  be ``"search"`` (every value listed here) or a list of them; each value becomes a
                  target of its own, named ``<target>+<label>`` (an empty label adds nothing)
    resolve       optional ``fn(params, values) -> params``: the rule's canonical parameters (what enters
                  the key), e.g. a default that depends on another parameter or on an engine value
                  made explicit. ``values`` holds every engine value: what it reads there reaches the
                  key through what it returns (torch-compile's "auto" buckets follow the profile's
                  batch sizes), so it need not be in ``uses``
    serves_dynamic_axes  its output serves every size within a model's declared dynamic axes
                  (navbuild.dynamic_axes); False: only fixed sizes, and config validation refuses the
                  format for a model that declares dynamic axes
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
    identifies_model: bool | None = None
    description: str = ""
    validate: Callable[[Mapping[str, Any], str, Mapping[str, Any]], str | None] | None = None
    loads_code: bool = False
    scan: Callable[[Path], str | None] | None = None
    outputs: tuple[str, ...] = ()
    triton: TritonModel | None = None
    role: str | None = None
    base: bool = False
    device_tools: tuple[str, ...] = ()
    variants: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    resolve: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]] | None = None
    uses: tuple[str, ...] = ()
    serves_dynamic_axes: bool = True

    def __post_init__(self) -> None:
        unknown = [name for name in self.uses if name not in ENGINE_VALUES]
        if unknown:
            raise ValueError(f"rule {self.name}: uses {unknown}, which the engine does not supply "
                             f"(it supplies {', '.join(ENGINE_VALUES)})")
        as_params = [name for name in self.params if name in ENGINE_VALUES]
        if as_params:
            raise ValueError(f"rule {self.name}: {as_params} are engine values, not parameters: declare them "
                             f"in uses=(...) and read ctx.{as_params[0]}")

    def serves(self, framework: str) -> bool:
        return not self.frameworks or framework in self.frameworks

    def undeclared_outputs(self, names: list[str]) -> list[str]:
        """The names among ``names`` (files it wrote) that its ``outputs`` do not declare."""
        if not self.outputs:
            return []
        return [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in self.outputs)]

    @property
    def output_identifies_model(self) -> bool:
        if self.identifies_model is not None:
            return self.identifies_model
        return self.normalized or self.canonical_digest is None

    def target_suffix(self, precision: str) -> str:
        if precision == self.precisions[0] and not self.suffix_default_precision:
            return self.name
        return f"{self.name}-{precision}"


@dataclass
class ModelSpec:
    """The model as declared in navbuild.toml, with paths resolved against the project root."""

    name: str
    framework: str
    entry: str  # "path/file.py:function", or the path of a model file (an ONNX file) for its rules to read
    root: Path
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    batch_dim: int = 0
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE  # NO_BATCH (0): dimension 0 is no batch; every shape is as the samples give it
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)  # input -> axis -> label
    # label -> its declared bounds ({"min": 1, "max": 512}, either may be absent): navbuild.dynamic_axes
    axis_bounds: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def batched(self) -> bool:
        """Whether dimension ``batch_dim`` of every input and output is a batch (max_batch_size >= 1)."""
        return self.max_batch_size != NO_BATCH

    def declared_shape(self, shape: Iterable[int], name: str = "", varying: Iterable[int] = ()) -> list[int]:
        """A tensor's shape as deployments declare it: -1 on the batch dimension when there is one, on
        every dynamic axis declared for tensor ``name``, and on the ``varying`` axes (an output axis
        that follows a dynamic input axis); every other dimension as ``shape`` gives it."""
        dims = [int(d) for d in shape]
        free = {*self.dynamic_axes.get(name, {}), *varying} | ({0} if self.batched else set())
        return [-1 if axis in free else size for axis, size in enumerate(dims)]

    def load_entry(self) -> Any:
        """Import ``entry`` from its file and call it: returns the live model. An entry that names a
        model file (no ``:function``) gives that file's resolved path."""
        if not is_function_entry(self.entry):
            return (self.root / self.entry).resolve()
        return call_entry(self.root, self.entry)


def is_function_entry(entry: str) -> bool:
    """``path/file.py:function`` rather than the path of a model file."""
    path_text, sep, func_name = entry.rpartition(":")
    return bool(sep and path_text and func_name)


def entry_file(entry: str) -> str:
    """The file an entry names: ``model.py`` of ``model.py:build``, or the model file itself."""
    return entry.rpartition(":")[0] if is_function_entry(entry) else entry


def call_entry(root: Path, entry: str, *args: Any) -> Any:
    """Call ``path/file.py:function`` relative to ``root``; the file is imported by path.

    While the file is imported and the function runs, the project root is first on ``sys.path``,
    as under ``python -m`` from the root: ``models/net.py`` imports its neighbour as
    ``from models.layers import Block``. Modules imported that way from another project's root
    (an earlier project in the same process) are forgotten first, so a name never finds stale code.
    """
    path_text, _, func_name = entry.rpartition(":")
    root = Path(root).resolve()
    path = (root / path_text).resolve()
    from navbuild.hashing import digest_bytes  # stable across processes, unlike hash()

    module_name = "navbuild_entry_" + path.stem + "_" + digest_bytes(str(path).encode())[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    with _project_imports(root):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, func_name)(*args)


_PROJECT_MODULES: dict[str, Path] = {}  # module imported by a model's code -> the project root it came from


@contextlib.contextmanager
def _project_imports(root: Path) -> Iterator[None]:
    for name, owner in list(_PROJECT_MODULES.items()):
        if owner != root:
            sys.modules.pop(name, None)
            del _PROJECT_MODULES[name]
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if _lives_under(sys.modules.get(name), root):
                _PROJECT_MODULES[name] = root


def _lives_under(module: Any, root: Path) -> bool:
    """Whether a module's file (or a namespace package's folder) is inside ``root``."""
    place = getattr(module, "__file__", None)
    if place is None:
        spec = getattr(module, "__spec__", None)
        locations = getattr(spec, "submodule_search_locations", None)
        place = next(iter(locations), None) if isinstance(locations, Iterable) else None
    return isinstance(place, str) and Path(place).resolve().is_relative_to(root)


@dataclass
class BuildContext:
    """Everything a rule's build function may use.

    input_dir   the upstream target's files (read-only), None for SOURCE rules
    out_dir     where the rule writes its outputs (empty, private to this build)
    samples     list of samples, each a dict input-name -> numpy array (batch dim first)
    params      the target's parameter values, only those the rule declared
    engine_values  the engine values the rule declared (``Rule.uses``), read as ``ctx.max_batch_size``,
                ``ctx.normalize`` and ``ctx.profile_batch_sizes``
    progress    says what a long build does now, as a verb people read after "still":
                ``ctx.progress("compiling")``, ``ctx.progress("exporting", "batch bucket 2 of 4")``;
                the console shows it beside the running target (the log keeps only ``log``)
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
    engine_values: Mapping[str, Any] = field(default_factory=dict)
    progress: Callable[..., None] = field(default=lambda phase, detail="": None, repr=False)

    @property
    def max_batch_size(self) -> int:
        return int(self._engine_value("max_batch_size"))

    @property
    def normalize(self) -> bool:
        return bool(self._engine_value("normalize"))

    @property
    def profile_batch_sizes(self) -> tuple[int, ...]:
        return tuple(self._engine_value("profile_batch_sizes"))

    def _engine_value(self, name: str) -> Any:
        if name not in self.engine_values:  # its key would not follow the value
            raise UndeclaredEngineValue(f"{self.target}: the rule reads ctx.{name} but does not declare it: "
                                        f"add {name!r} to its Rule's uses")
        return self.engine_values[name]

    def input_path(self, name: str) -> Path:
        assert self.input_dir is not None, "this rule consumes the source model"
        return self.input_dir / name

    def copy_input(self, name: str, dest_name: str | None = None) -> Path:
        dest = self.out_dir / (dest_name or name)
        shutil.copyfile(self.input_path(name), dest)
        return dest


class UndeclaredEngineValue(LookupError):
    """A build read an engine value that its rule does not declare in ``Rule.uses``."""


class Skip(Exception):
    """Raised by a build function when the target cannot be built here (reason in the message).

    Use it for facts about the machine or tools (an exporter missing, no GPU for TF32), and for a
    precision that does not apply to the model (float16 of a graph with nothing float32 to convert):
    the reason says which. A model that fails to convert is a failure, never a skip.
    """
