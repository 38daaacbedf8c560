"""navbuild.toml: parse, validate, and resolve into plain dataclasses.

Every problem is a ConfigError naming the file, the key, what is wrong and how to fix it; the CLI
turns it into exit code 2 before anything is built. Validation never imports a framework: entry
points are checked by parsing their file with ``ast``.
"""
from __future__ import annotations

import ast
import functools
import math
import os
import posixpath
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from navbuild import dynamic_axes, validate
from navbuild.engine import remote_settings
from navbuild.engine.variants import VariantError, expand as expand_variants
from navbuild.measure.settings import (DEFAULT_STRATEGIES, DEFAULT_TOLERANCES, ProfileConfig, ProfileSettings,
                                       SettingsError, Tolerance, Tolerances)
from navbuild.rule import DEFAULT_MAX_BATCH_SIZE, ModelSpec, entry_file, is_function_entry

CONFIG_NAME = "navbuild.toml"
DEFAULT_TIMEOUT_S = 1800.0  # one build, check or profile; [project] timeout, per model, per format
DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "tf32")


class ConfigError(Exception):
    def __init__(self, path: Path | str, key: str, problem: str, fix: str = "") -> None:
        self.path, self.key, self.problem, self.fix = str(path), key, problem, fix
        text = f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
        super().__init__(text + (f"\n  fix: {fix}" if fix else ""))


@dataclass
class TargetsConfig:
    formats: list[str]
    precisions: list[str]
    device: str
    format_options: dict[str, dict[str, Any]]  # format -> rule params from [targets.<format>]
    timeouts: dict[str, float] = field(default_factory=dict)  # format -> seconds, from [targets.<format>]
    # navbuild.rule.ENGINE_VALUES for this model's targets: each rule reads those it declares
    engine_values: dict[str, Any] = field(default_factory=dict)
    # format -> the precisions it builds instead of ``precisions`` ([targets.<format>] precisions)
    format_precisions: dict[str, list[str]] = field(default_factory=dict)

    def precisions_for(self, fmt: str) -> list[str]:
        return self.format_precisions.get(fmt, self.precisions)


@dataclass
class ModelConfig:
    spec: ModelSpec
    samples: str  # "file.py:function" or a path to a .tensors/.npz file
    sources: list[str]  # globs relative to the root
    targets: TargetsConfig
    correctness: Tolerances  # measure/settings.py
    timeout: float = DEFAULT_TIMEOUT_S  # seconds a build, check or profile of user code may take

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class ProjectConfig:
    path: Path
    root: Path
    name: str
    device: str
    store: Path
    out: Path
    models: dict[str, ModelConfig]
    profile: ProfileSettings = ProfileSettings()  # [profile], measure/settings.py
    remote: remote_settings.RemoteSettings = remote_settings.RemoteSettings()  # [cache]
    timeout: float = DEFAULT_TIMEOUT_S
    mapping: dict[str, Any] = field(default_factory=dict)  # the validated mapping: a worker reopens it
    trust_keys: tuple[str, ...] = ()  # [trust] keys: signers whose packages' artifacts are proven


# -- small typed readers ----------------------------------------------------------------------
class _Reader:
    def __init__(self, path: Path, table: Mapping[str, Any], where: str) -> None:
        self.path, self.table, self.where = path, table, where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., fix: str = "") -> Any:
        self.used.add(name)
        if name not in self.table:
            if default is ...:
                raise ConfigError(self.path, self.key(name), "is required", fix)
            return default
        value = self.table[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(self.path, self.key(name), f"must be {_kind_word(names)}, not "
                              f"{type(value).__name__} {value!r}", fix)
        return value

    def str_list(self, name: str, default: Any = ...) -> list[str]:
        value = self.get(name, list, default)
        if any(not isinstance(v, str) for v in value):
            raise ConfigError(self.path, self.key(name), "must be a list of strings")
        return list(value)

    def table_(self, name: str) -> dict[str, Any]:
        return self.get(name, dict, {})

    def reject_unknown(self, allowed_extra: set[str] = frozenset()) -> None:
        unknown = sorted(set(self.table) - self.used - set(allowed_extra))
        if unknown:
            known = ", ".join(sorted(self.used | set(allowed_extra)))
            raise ConfigError(self.path, self.key(unknown[0]), "unknown key",
                              f"remove it or use one of: {known}")


def _kind_word(names: str) -> str:
    words = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
             "list": "a list", "dict": "a table"}
    return " or ".join(words.get(n, n) for n in names.split(" or "))


# -- loading ------------------------------------------------------------------------------------
def find_config(start: Path) -> Path:
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(start / CONFIG_NAME, "", "no navbuild.toml here or in any parent folder",
                      "run navbuild from a project folder, or pass --config PATH")


def read(path: Path) -> dict[str, Any]:
    """The TOML mapping of ``path`` (a folder holding navbuild.toml is taken for that file)."""
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        path = path / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found")
    except IsADirectoryError:
        raise ConfigError(path, "", f"is a folder with no {CONFIG_NAME}", "pass the path of navbuild.toml itself")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"is not UTF-8 text (byte {exc.start})", "save it as UTF-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read: {exc.strerror or exc}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}", "fix the syntax at the position shown")
    except RecursionError:
        raise ConfigError(path, "", "nests tables or lists too deeply to be read",
                          f"navbuild.toml needs at most 5 levels; {validate.MAX_DEPTH} are allowed")


def config_path(path: Path) -> Path:
    path = Path(path).resolve()
    return path / CONFIG_NAME if path.is_dir() and (path / CONFIG_NAME).is_file() else path


KnownFormats = Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None


def load(path: Path, known_formats: KnownFormats = None) -> ProjectConfig:
    """Read and validate ``path``. ``known_formats`` maps format name -> Rule for validation, or is a
    function of a model's framework that gives that map (``Registry.formats``)."""
    path = config_path(path)
    return from_mapping(read(path), path.parent, known_formats, label=path)


def from_mapping(data: Mapping[str, Any], root: Path, known_formats: KnownFormats = None,
                 label: Path | str | None = None) -> ProjectConfig:
    """Validate a project given as the mapping that navbuild.toml holds (what ``tomllib`` returns),
    its paths relative to ``root``. ``label`` names the source in every ConfigError (the file, or
    e.g. "OptimizeConfig"). The one validator: navbuild.toml, the Python API and a worker process
    reopening a project (``project.open_described``) all come here."""
    root = Path(root).resolve()
    path = Path(label) if label is not None else root / CONFIG_NAME
    if not isinstance(data, Mapping):
        raise ConfigError(path, "", f"must be a table (a mapping), not {type(data).__name__}")
    for key, value in data.items():
        _checked(path, str(key), validate.nesting, value)
    top = _Reader(path, data, "")
    project = _Reader(path, top.table_("project"), "project")
    name = _plain_name(path, project.key("name"), project.get("name", str, root.name))
    device = _device(path, project, "device", "cpu")
    outside = project.get("allow_paths_outside", bool, False)
    store = _inside(path, root, project.key("store"), project.get("store", str, ".navbuild"), outside)
    out = _inside(path, root, project.key("out"), project.get("out", str, "navbuild-out"), outside)
    _separate_folders(path, root, store, out)
    timeout = _timeout(path, project, DEFAULT_TIMEOUT_S)
    project.reject_unknown()
    correctness = _correctness(path, top.table_("correctness"), "correctness", None)
    profile = _profile(path, top.table_("profile"))
    trust_keys = _trust_keys(path, top.table_("trust"))
    try:
        remote = remote_settings.from_table(top.table_("cache"))
    except remote_settings.RemoteSettingsError as exc:
        raise ConfigError(path, exc.where, exc.problem, exc.fix)
    models_table = top.get("models", dict, fix="declare at least one [models.<name>] table")
    if not models_table:
        raise ConfigError(path, "models", "declares no model", "add a [models.<name>] table")
    models = {}
    for model_name, table in models_table.items():
        if not isinstance(table, dict):
            raise ConfigError(path, f"models.{model_name}", "must be a table")
        if not model_name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(path, f"models.{model_name}", "a model name may hold letters, digits, "
                              "'-' and '_' only")
        _checked(path, f"models.{model_name}", validate.file_name, model_name)
        models[model_name] = _model(path, root, model_name, table, device, correctness, known_formats, timeout,
                                    profile.batch_sizes)
    _check_profile_batches(path, profile, models)
    top.reject_unknown()
    _check_swept_axes(path, profile, models)
    _known_outputs(path, "correctness", correctness, models.values())
    for folder_key, folder in (("project.out", out), ("project.store", store)):
        _apart_from_sources(path, root, folder_key, folder, models.values())
    return ProjectConfig(path=path, root=root, name=name, device=device, store=store, out=out,
                         models=models, profile=profile, remote=remote, timeout=timeout, mapping=dict(data),
                         trust_keys=trust_keys)


def _trust_keys(path: Path, table: Mapping[str, Any]) -> tuple[str, ...]:
    """``[trust] keys``: the Ed25519 public keys whose signed packages this project takes as proven."""
    if not table:
        return ()
    reader = _Reader(path, table, "trust")
    keys = _checked(path, reader.key("keys"), validate.no_duplicates, reader.str_list("keys", []))
    reader.reject_unknown()
    for key in keys:
        _checked(path, reader.key("keys"), validate.ed25519_public_key, key)
    return tuple(keys)


def _checked(path: Path, key: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)`` (a ``validate`` function), its refusal turned into a ConfigError on ``key``."""
    try:
        return check(*args)
    except validate.Invalid as exc:
        raise ConfigError(path, key, exc.problem, exc.fix) from None


# -- paths ----------------------------------------------------------------------------------------
OUTSIDE_FIX = "use a path inside the folder of navbuild.toml"


def _unusable(text: str) -> bool:
    return not text or any(unicodedata.category(c).startswith("C") for c in text)


def _plain_name(path: Path, key: str, text: str) -> str:
    if _unusable(text) or text in (".", "..") or "/" in text or "\\" in text:
        raise ConfigError(path, key, f"{text!r} is not a plain name (it names files: no '/', '..' or control "
                          "characters)")
    return _checked(path, key, validate.file_name, text)


def _escapes(text: str) -> bool:
    """A path that leaves the folder it is relative to (absolute, or ``..`` past its start)."""
    normal = posixpath.normpath(text.replace("\\", "/"))
    return normal.startswith("/") or normal == ".." or normal.startswith("../")


def _inside(path: Path, root: Path, key: str, text: str, outside_allowed: bool = False) -> Path:
    """``root / text``, refused when ``text`` leads out of the project (unless that is allowed)."""
    if _unusable(text):
        raise ConfigError(path, key, f"{text!r} is not a usable path")
    if _escapes(text) and not outside_allowed:
        raise ConfigError(path, key, f"{text!r} is outside the project folder",
                          OUTSIDE_FIX + (" (or set allow_paths_outside = true in [project] for store and out)"
                                         if key.startswith("project.") else ""))
    return root / text


def _separate_folders(path: Path, root: Path, store: Path, out: Path) -> None:
    """`clean` deletes out: it must never hold the store or the project, nor be the same folder."""
    root_, store_, out_ = (Path(os.path.normpath(p)) for p in (root, store, out))
    for key, folder in (("project.out", out_), ("project.store", store_)):
        if folder == root_ or folder in root_.parents:
            raise ConfigError(path, key, f"{folder} is the project folder or holds it", "name a folder of its own")
    if out_ == store_ or out_ in store_.parents or store_ in out_.parents:
        raise ConfigError(path, "project.out", "out and store must be separate folders (clean deletes out)")


_GLOB_CHARS = frozenset("*?[")


def _apart_from_sources(path: Path, root: Path, key: str, folder: Path, models: Iterable[ModelConfig]) -> None:
    """``out`` and ``store`` (which ``clean`` and ``gc`` delete in) never are, hold or sit inside what
    the project declares: a source, an entry, a samples file, the config."""
    folder = Path(os.path.normpath(folder))
    if folder == Path(os.path.normpath(path)):
        raise ConfigError(path, key, f"{folder} is the config file", "name a folder of its own")
    for model in models:
        samples_file = model.samples.rsplit(":", 1)[0] if ":" in model.samples else model.samples
        for pattern in (*model.sources, entry_file(model.spec.entry), samples_file):
            declared = _declared_overlap(root, folder, pattern)
            if declared is not None:
                raise ConfigError(path, key, f"{folder} {declared} (declared by models.{model.name})",
                                  "name a folder of its own that holds no source: clean and gc delete there")


def _declared_overlap(root: Path, folder: Path, pattern: str) -> str | None:
    """How ``folder`` overlaps what ``pattern`` declares (is it, holds it, sits inside it), or None."""
    parts = pattern.replace("\\", "/").split("/")
    literal = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        literal.append(part)
    prefix = Path(os.path.normpath(root.joinpath(*literal))) if literal else Path(os.path.normpath(root))
    if folder == prefix or folder in prefix.parents:
        what = "is" if folder == prefix and len(literal) == len(parts) else "holds"
        return f"{what} the declared source {pattern!r}"
    if prefix not in folder.parents:
        return None
    if len(literal) == len(parts):  # a literal path that holds the folder: a declared folder
        return f"sits inside the declared source {pattern!r}"
    for match in root.glob(pattern):  # the folder lies under a wildcard pattern's fixed part
        match = Path(os.path.normpath(match))
        if match == folder or folder in match.parents:
            return f"holds {match.relative_to(root)}, declared by {pattern!r}"
        if match in folder.parents:
            return f"sits inside {match.relative_to(root)}, declared by {pattern!r}"
    return None


def _timeout(path: Path, reader: _Reader, default: float) -> float:
    value = reader.get("timeout", float, default, fix="seconds, e.g. timeout = 600")
    return _checked(path, reader.key("timeout"), validate.seconds, value)


def _profile(path: Path, table: Mapping[str, Any]) -> ProfileSettings:
    """``[profile]`` read once into its typed settings (measure/settings.py)."""
    reader = _Reader(path, table, "profile")
    enabled = reader.get("enabled", bool, True)
    strategies = reader.str_list("strategies", list(DEFAULT_STRATEGIES))
    _checked(path, reader.key("strategies"), validate.not_empty, strategies, '["max-throughput"]')
    _checked(path, reader.key("strategies"), validate.no_duplicates, strategies)
    tie_margin_pct = reader.get("tie_margin_pct", float, None, fix="a percentage, e.g. 5.0")
    if tie_margin_pct is not None and not 0 <= tie_margin_pct < 100:
        raise ConfigError(path, reader.key("tie_margin_pct"), f"must be a percentage from 0 to below 100, "
                          f"not {tie_margin_pct:g}", "0 compares figures exactly; unset: 10 on a CPU, 3 on a GPU")
    options = {k: v for k, v in table.items() if k not in reader.used}
    if not table:
        return ProfileSettings(enabled=enabled, strategies=tuple(strategies))
    from navbuild.measure.selection import parse_strategy  # only when there is something to check

    try:
        measure = ProfileConfig.from_dict(options)
    except SettingsError as exc:
        raise ConfigError(path, reader.key(exc.key), exc.problem, exc.fix)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, "profile", str(exc), "see docs/profiling.md for the options")
    for strategy in strategies:
        try:
            parse_strategy(strategy)
        except ValueError as exc:
            raise ConfigError(path, "profile.strategies", str(exc))
    return ProfileSettings(enabled=enabled, strategies=tuple(strategies), measure=measure,
                           tie_margin_pct=tie_margin_pct)


def _check_swept_axes(path: Path, profile: ProfileSettings, models: Mapping[str, ModelConfig]) -> None:
    """``[profile] axis_sizes`` names dynamic axes that some model declares."""
    declared = {label for model in models.values() for label in dynamic_axes.labels(model.spec.dynamic_axes)}
    for label in profile.measure.axis_sizes or {}:
        if label not in declared:
            raise ConfigError(path, f"profile.axis_sizes.{label}", f"no model declares a dynamic axis named {label!r}",
                              f"use one of: {', '.join(sorted(declared))}" if declared else
                              "declare it in a model's dynamic_axes")


def _check_profile_batches(path: Path, profile: ProfileSettings, models: Mapping[str, "ModelConfig"]) -> None:
    """``[profile]`` batch sizes (and the sweep's top) no larger than any batched model's max_batch_size:
    a model's exports refuse a larger batch, so its profile would fail after everything was built. A
    model without a batch dimension (max_batch_size 0) is profiled on its samples as they are."""
    if not profile.enabled:
        return
    measure = profile.measure
    for key, largest in (("batch_sizes", max(measure.batch_sizes or (), default=0)),
                         ("sweep_up_to", measure.sweep_up_to)):
        if not largest:
            continue
        for name, model in models.items():
            limit = model.spec.max_batch_size
            if model.spec.batched and largest > limit:
                raise ConfigError(path, f"profile.{key}", f"batch size {largest} is above max_batch_size {limit} of "
                                  f"model {name}; its exports take no larger batch",
                                  f"profile batches of at most {limit}, or raise models.{name}.max_batch_size")


def _device(path: Path, reader: _Reader, key: str, default: str) -> str:
    value = reader.get(key, str, default)
    if value not in DEVICES:
        raise ConfigError(path, reader.key(key), f"unknown device {value!r}", f"use one of {DEVICES}")
    return value


def _tolerance(path: Path, table: Mapping[str, Any], where: str, base: Tolerance) -> Tolerance:
    reader = _Reader(path, table, where)
    atol = reader.get("atol", float, base.atol)
    rtol = reader.get("rtol", float, base.rtol)
    range_tol = reader.get("range_tol", float, base.range_tol)
    if atol < 0 or rtol < 0 or range_tol < 0:
        raise ConfigError(path, where, "tolerances must not be negative")
    for name, value in (("atol", atol), ("rtol", rtol), ("range_tol", range_tol)):  # NaN passes every check
        _checked(path, reader.key(name), validate.finite, value, 0.0, math.inf, "a finite tolerance")
    return Tolerance(atol, rtol, range_tol)


def _correctness(path: Path, table: Mapping[str, Any], where: str,
                 parent: Tolerances | None, declared_outputs: tuple[str, ...] = ()) -> Tolerances:
    reader = _Reader(path, table, where)
    reader.get("atol", float, 0.0)
    reader.get("rtol", float, 0.0)
    reader.get("range_tol", float, 0.0)
    outputs = reader.table_("outputs")
    precision_tables = reader.table_("precision")
    reader.reject_unknown()
    by_precision = {}
    for precision in PRECISIONS:
        if parent is not None:
            base = parent.by_precision[precision]
        else:
            base = Tolerance(**DEFAULT_TOLERANCES[precision])
        # [correctness] atol/rtol set fp32 (and stricter reduced-precision values are kept loose)
        if precision == "fp32":
            base = _tolerance(path, {k: table[k] for k in ("atol", "rtol", "range_tol") if k in table}, where, base)
        per = precision_tables.get(precision)
        if per is not None and not isinstance(per, dict):
            raise ConfigError(path, f"{where}.precision.{precision}", "must be a table with atol, rtol and/or range_tol")
        by_precision[precision] = _tolerance(path, per, f"{where}.precision.{precision}", base) if per else base
    unknown = sorted(set(precision_tables) - set(PRECISIONS))
    if unknown:
        raise ConfigError(path, f"{where}.precision.{unknown[0]}", "unknown precision", f"use one of {PRECISIONS}")
    by_output = {p: dict(v) for p, v in parent.by_output.items()} if parent else {}
    for output, spec in outputs.items():
        if declared_outputs and output not in declared_outputs:
            raise ConfigError(path, f"{where}.outputs.{output}", f"is not an output of the model (its outputs: "
                              f"{', '.join(declared_outputs)})", "name one of its outputs, or remove the table")
        if not isinstance(spec, dict):
            raise ConfigError(path, f"{where}.outputs.{output}", "must be a table with atol, rtol and/or range_tol")
        by_output.setdefault("*", {})[output] = _tolerance(path, spec, f"{where}.outputs.{output}",
                                                           by_precision["fp32"])
    return Tolerances(by_precision=by_precision, by_output=by_output)


def _known_outputs(path: Path, where: str, correctness: Tolerances, models: Iterable[ModelConfig]) -> None:
    """Project-wide output tolerances name an output of some model (when every model declares its
    outputs; one that does not may have any)."""
    models = list(models)
    if not all(model.spec.outputs for model in models):
        return
    known = {output for model in models for output in model.spec.outputs}
    for output in correctness.by_output.get("*", {}):
        if output not in known:
            raise ConfigError(path, f"{where}.outputs.{output}", f"is an output of no model (their outputs: "
                              f"{', '.join(sorted(known))})", "name a declared output, or remove the table")


def _model(path: Path, root: Path, name: str, table: Mapping[str, Any], project_device: str,
           correctness: Tolerances, known_formats: KnownFormats,
           project_timeout: float = DEFAULT_TIMEOUT_S, profile_batch_sizes: tuple[int, ...] = ()) -> ModelConfig:
    where = f"models.{name}"
    reader = _Reader(path, table, where)
    framework = reader.get("framework", str, fix='e.g. framework = "torch"')
    entry = reader.get("entry", str, fix='e.g. entry = "model.py:build_model", or a model file: "model.onnx"')
    if is_function_entry(entry) or entry.endswith(".py"):  # python code needs its function's name
        _check_entry(path, root, reader.key("entry"), entry)
    elif not _inside(path, root, reader.key("entry"), entry).is_file():
        raise ConfigError(path, reader.key("entry"), f"file {entry} does not exist",
                          "give 'path/file.py:function', or the path of a model file, relative to the folder "
                          "holding navbuild.toml")
    samples = reader.get("samples", str, fix='a function ("model.py:make_samples") or a .tensors/.npz file')
    if ":" in samples and samples.rsplit(":", 1)[0].endswith(".py"):
        _check_entry(path, root, reader.key("samples"), samples)
    elif not _inside(path, root, reader.key("samples"), samples).is_file():
        raise ConfigError(path, reader.key("samples"), f"file {samples} does not exist",
                          "give an existing file or a 'file.py:function' that returns samples")
    sources = reader.str_list("sources", [entry_file(entry)])
    for pattern in sources:
        _check_pattern(path, root, reader.key("sources"), pattern)
    inputs = _checked(path, reader.key("inputs"), validate.no_duplicates, reader.str_list("inputs", []))
    outputs = _checked(path, reader.key("outputs"), validate.no_duplicates, reader.str_list("outputs", []))
    batch_dim = reader.get("batch_dim", int, 0)
    if batch_dim != 0:
        raise ConfigError(path, reader.key("batch_dim"), "only batch_dim = 0 is supported",
                          "put the batch dimension first")
    max_batch_size = reader.get("max_batch_size", int, DEFAULT_MAX_BATCH_SIZE)
    if max_batch_size < 0:
        raise ConfigError(path, reader.key("max_batch_size"), f"must be 0 or more, not {max_batch_size}",
                          "0: the model has no batch dimension (its shapes as they are); N: batches of up to N "
                          "along dimension 0")
    _checked(path, reader.key("max_batch_size"), validate.int_in, max_batch_size, 0, validate.MAX_INT)
    axes, bounds = _dynamic_axes(path, reader.key("dynamic_axes"), reader.table_("dynamic_axes"), inputs, outputs)
    device = _device(path, reader, "device", project_device)
    timeout = _timeout(path, reader, project_timeout)
    formats = known_formats(framework) if callable(known_formats) else known_formats
    engine_values = {"max_batch_size": max_batch_size, "profile_batch_sizes": list(profile_batch_sizes)}
    targets = _targets(path, reader.table_("targets"), f"{where}.targets", device, formats, engine_values)
    _check_dynamic_formats(path, f"{where}.targets.formats", axes, targets.formats, formats)
    model_correctness = _correctness(path, reader.table_("correctness"), f"{where}.correctness", correctness,
                                     tuple(outputs))
    reader.reject_unknown()
    spec = ModelSpec(name=name, framework=framework, entry=entry, root=root, inputs=tuple(inputs),
                     outputs=tuple(outputs), batch_dim=batch_dim, max_batch_size=max_batch_size,
                     dynamic_axes=axes, axis_bounds=bounds)
    return ModelConfig(spec=spec, samples=samples, sources=sources, targets=targets,
                       correctness=model_correctness, timeout=timeout)


def _check_pattern(path: Path, root: Path, key: str, pattern: str) -> None:
    if _unusable(pattern) or pattern.startswith("/") or ".." in pattern.replace("\\", "/").split("/"):
        raise ConfigError(path, key, f"{pattern!r} is not a pattern inside the project folder", OUTSIDE_FIX)
    try:
        matched = any(root.glob(pattern))
    except (ValueError, NotImplementedError, OSError) as exc:
        raise ConfigError(path, key, f"{pattern!r} is not a usable glob pattern ({exc})")
    if not matched:
        raise ConfigError(path, key, f"{pattern!r} matches no file",
                          "list the model's files relative to the folder of navbuild.toml")


def _dynamic_axes(path: Path, where: str, table: Mapping[str, Any], inputs: list[str],
                  outputs: list[str]) -> tuple[dict[str, dict[int, str]], dict[str, dict[str, int]]]:
    """``(axes, bounds)`` (navbuild.dynamic_axes); an axis of a tensor the model does not declare is
    an error when it declares its inputs."""
    try:
        axes, bounds = dynamic_axes.parse(table)
    except dynamic_axes.AxisError as exc:
        raise ConfigError(path, f"{where}.{exc.where}" if exc.where else where, exc.problem, exc.fix)
    known = [*inputs, *outputs]
    for name in axes:
        if inputs and name not in known:
            raise ConfigError(path, f"{where}.{name}", f"is not an input of the model (its inputs: {', '.join(inputs)}"
                              + (f"; its outputs: {', '.join(outputs)})" if outputs else ")"),
                              "name one of the declared inputs (the axes of outputs that follow it are found by "
                              "the build)")
    return axes, bounds


def _check_dynamic_formats(path: Path, where: str, axes: Mapping[str, Any], formats: list[str],
                           known_formats: Mapping[str, Any] | None) -> None:
    """A format whose artifact serves only the samples' sizes along non-batch axes cannot take a
    model with dynamic axes: say so now rather than at its check (``Rule.serves_dynamic_axes``)."""
    if not axes or known_formats is None:
        return
    for fmt in formats:
        if not getattr(known_formats[fmt], "serves_dynamic_axes", True):
            raise ConfigError(path, where, f"format {fmt} cannot serve the dynamic axes "
                              f"{', '.join(dynamic_axes.labels(axes))} of this model (its artifact is built for "
                              f"fixed sizes)", f"drop {fmt} from formats, or remove dynamic_axes")


def _targets(path: Path, table: Mapping[str, Any], where: str, device: str,
             known_formats: Mapping[str, Any] | None, engine_values: Mapping[str, Any]) -> TargetsConfig:
    reader = _Reader(path, table, where)
    if "formats" not in table:
        raise ConfigError(path, reader.key("formats"), "is required", 'e.g. formats = ["onnx", "torchscript-trace"]')
    formats = _checked(path, reader.key("formats"), validate.no_duplicates, reader.str_list("formats"))
    _checked(path, reader.key("formats"), validate.not_empty, formats, '["onnx"]')
    precisions = _checked(path, reader.key("precisions"), validate.no_duplicates,
                          reader.str_list("precisions", ["fp32"]))
    _checked(path, reader.key("precisions"), validate.not_empty, precisions, '["fp32"]')
    target_device = _device(path, reader, "device", device)
    engine_values = {**engine_values, "normalize": reader.get("normalize", bool, True)}
    options = {}
    for fmt in formats:
        if known_formats is not None and fmt not in known_formats:
            raise ConfigError(path, f"{where}.formats", f"unknown format {fmt!r}",
                              f"use one of: {', '.join(sorted(known_formats))}")
    _check_precisions(path, f"{where}.precisions", precisions)
    timeouts, format_precisions = {}, {}
    for key, value in table.items():
        if key in reader.used:
            continue
        if key not in formats:
            raise ConfigError(path, f"{where}.{key}", "unknown key",
                              "use formats, precisions, device, normalize, or a table named after a "
                              "declared format holding its options")
        if not isinstance(value, dict):
            raise ConfigError(path, f"{where}.{key}", "format options must be a table")
        options[key] = dict(value)
        if "timeout" in value:  # the engine's, not the rule's: how long its targets may take
            timeouts[key] = _timeout(path, _Reader(path, {"timeout": options[key].pop("timeout")},
                                                   f"{where}.{key}"), DEFAULT_TIMEOUT_S)
        if "precisions" in value:  # the engine's too: which targets the format gets
            format_precisions[key] = _Reader(path, {"precisions": options[key].pop("precisions")},
                                             f"{where}.{key}").str_list("precisions")
            _check_precisions(path, f"{where}.{key}.precisions", format_precisions[key])
    targets = TargetsConfig(formats=formats, precisions=precisions, device=target_device, format_options=options,
                            timeouts=timeouts, engine_values=engine_values, format_precisions=format_precisions)
    if known_formats is not None:
        _check_format_options(path, where, targets, known_formats)
    return targets


def _check_precisions(path: Path, key: str, precisions: list[str]) -> None:
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ConfigError(path, key, f"unknown precision {precision!r}", f"use one of {PRECISIONS}")


def _check_format_options(path: Path, where: str, targets: TargetsConfig, known_formats: Mapping[str, Any]) -> None:
    formats, options, engine_values = targets.formats, targets.format_options, targets.engine_values
    for fmt, values in options.items():
        rule = known_formats[fmt]
        allowed = set(getattr(rule, "params", {}))
        for key in values:
            if key not in allowed:
                raise ConfigError(path, f"{where}.{fmt}.{key}", f"format {fmt} has no option {key!r}",
                                  f"its options are: {', '.join(sorted(allowed)) or 'none'}")
    for fmt in formats:
        rule = known_formats[fmt]
        validate = getattr(rule, "validate", None)
        declared = {name: engine_values[name] for name in getattr(rule, "uses", ())}
        try:
            variants = expand_variants(rule, options.get(fmt, {}))
        except VariantError as exc:
            raise ConfigError(path, f"{where}.{fmt}.{exc.option}", exc.problem, exc.fix)
        precisions = targets.precisions_for(fmt)
        key = f"{where}.{fmt}.precisions" if fmt in targets.format_precisions else f"{where}.precisions"
        for precision in precisions:
            if precision not in rule.precisions:
                continue
            for variant in variants:
                problem = validate(variant.options, precision, declared) if validate else None
                if problem:
                    raise ConfigError(path, f"{where}.{fmt}", problem)
        if not any(p in rule.precisions for p in precisions):
            raise ConfigError(path, key, f"format {fmt} builds none of {precisions}",
                              f"it supports {list(rule.precisions)}")


def _check_entry(path: Path, root: Path, key: str, entry: str) -> None:
    """``file.py:function``: the file exists and defines that name (checked without importing)."""
    file_text, sep, func = entry.rpartition(":")
    if not sep or not file_text or not func:
        raise ConfigError(path, key, f"{entry!r} is not of the form 'path/file.py:function'")
    source = _inside(path, root, key, file_text)
    if not source.is_file():
        raise ConfigError(path, key, f"file {file_text} does not exist",
                          "paths are relative to the folder holding navbuild.toml")
    try:
        stat = source.stat()
        defined = _defined_names(str(source), stat.st_mtime_ns, stat.st_size)
    except SyntaxError as exc:
        raise ConfigError(path, key, f"{file_text} has a syntax error at line {exc.lineno}: {exc.msg}")
    except (ValueError, OSError, RecursionError, MemoryError) as exc:
        raise ConfigError(path, key, f"{file_text} cannot be read as Python: {type(exc).__name__}: {exc}")
    if func not in defined:
        raise ConfigError(path, key, f"{file_text} defines no {func!r}",
                          f"define {func}() there or point to an existing function")


@functools.lru_cache(maxsize=4096)
def _defined_names(source: str, mtime_ns: int, size: int) -> frozenset[str]:
    """Top-level names a Python file defines; parsed once per version of the file (an entry and
    its samples function usually share one)."""
    tree = ast.parse(Path(source).read_bytes(), filename=source)
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(defined)
