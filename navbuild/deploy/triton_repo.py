"""Triton model repository writer: ``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.*``.

It reads the build status (docs/status-schema.md), picks the target that a strategy selected (or the
one asked for), and lays it out as its rule declared (``navbuild.rule.TritonModel``, recorded in the
status as ``triton``): the backend that runs it natively and where each file goes under ``1/``. A
target whose rule declares none goes to Triton's ``python`` backend: ``1/model.py``
(navbuild/deploy/triton_python_model.py) loads the navbuild runner named in the status, with the
target's files in ``1/artifact/`` and ``1/navbuild_model.json`` describing the model, runner and
precision (``runner_spec``).

Nothing here imports a framework at module import time.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from navbuild.deploy import declared, triton_config
from navbuild.hashing import digest_file
from navbuild.rule import TritonModel, entry_file

SPEC_FORMAT = "navbuild-triton-model/1"
SPEC_FILE = "navbuild_model.json"
VERSION = "1"
USABLE = ("built", "cached")
TEMPLATE = Path(__file__).with_name("triton_python_model.py")
SOURCE_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "navbuild-out", "model_repository")


class DeployError(RuntimeError):
    """A model or target cannot be deployed; the message names the model, target and cause."""


# -- reading the status -------------------------------------------------------------------------
def model_status(status: Mapping[str, Any], model_name: str) -> dict[str, Any]:
    models = status.get("models") or {}
    if model_name not in models:
        raise DeployError(f"model {model_name!r} is not in the build status; models: "
                          f"{', '.join(sorted(models)) or 'none'}")
    return models[model_name]


def deployed_target(status: Mapping[str, Any], model_name: str, *, target: str | None = None,
                    strategy: str = "max-throughput") -> tuple[str, dict[str, Any]]:
    """``(target name, target entry)``: ``target`` if given, else the one ``strategy`` selected.

    The target must have been built (``built`` or ``cached``) and must not have failed its
    correctness check.
    """
    model = model_status(status, model_name)
    targets = model.get("targets") or {}
    if target is None:
        from navbuild.measure.correctness import none_passed

        selected = model.get("selected") or {}
        failed = none_passed(targets)
        if failed and not selected.get(strategy):
            raise DeployError(f"model {model_name}: {failed}; there is nothing to deploy until one passes "
                              f"(the logs: navbuild-out/{model_name}/<target>/check.log)")
        if strategy not in selected or selected[strategy] is None:
            raise DeployError(f"model {model_name}: no target selected for strategy {strategy!r} "
                              f"({_why_none_selected(targets, selected, model_name)}); name a target (--target) or "
                              f"fix the targets named")
        target = selected[strategy]
    if target not in targets:
        raise DeployError(f"model {model_name}: no target {target!r}; targets: "
                          f"{', '.join(sorted(targets)) or 'none'}")
    entry = targets[target]
    if entry.get("packaged") is False:
        raise DeployError(f"{model_name}:{target} is described in the package but its files are not in it "
                          f"(package it with its strategy, or with include_all)")
    if entry.get("status") not in USABLE:
        reason = entry.get("reason") or "no reason recorded"
        raise DeployError(f"{model_name}:{target} is {entry.get('status')!r}, not built: {reason}")
    correctness = entry.get("correctness")
    if correctness is not None and not correctness.get("passed", True):
        raise DeployError(f"{model_name}:{target} failed its correctness check; it is not deployed")
    return target, entry


def _why_none_selected(targets: Mapping[str, Any], selected: Mapping[str, Any], model_name: str = "") -> str:
    """The targets that could not take part in a selection, each with its status and reason; or,
    when every one was built, what the other strategies selected and the command that profiles them."""
    unusable = [f"{name} {entry.get('status')}: {entry.get('reason') or 'no reason recorded'}"
                for name, entry in sorted(targets.items()) if entry.get("status") not in USABLE]
    if unusable:
        return "; ".join(unusable)
    return (f"selected: {json.dumps(dict(selected), sort_keys=True)}; its targets are not profiled yet: "
            f"`navbuild {model_name or '<model>'}` builds their profiles")


def serving(target: Mapping[str, Any], framework: str | None, backend: str, label: str) -> TritonModel:
    """How to serve the target: ``backend`` "auto" takes the rule's declared Triton mapping, else the
    python backend; "python" forces that; the declared backend's own name is accepted too."""
    native = declared.triton_model(target, framework)
    if backend == "auto":
        return native or triton_config.PYTHON
    if backend == triton_config.PYTHON.backend:
        return triton_config.PYTHON
    if native is not None and backend == native.backend:
        return native
    usable = ["auto", triton_config.PYTHON.backend] + ([native.backend] if native else [])
    raise DeployError(f"{label}: unknown Triton backend {backend!r} for this target; use {', '.join(usable)}")


def renamed_tensors(status: Mapping[str, Any], model_name: str, *, target: str | None = None,
                    strategy: str = "max-throughput", backend: str = "auto") -> list[tuple[str, str]]:
    """``(status name, Triton name)`` of every tensor that the deployment renames: Triton's pytorch
    backend takes TorchScript tensors by position, named ``<name>__<index>`` (``image__0``)."""
    target_name, entry = deployed_target(status, model_name, target=target, strategy=strategy)
    model = model_status(status, model_name)
    how = serving(entry, model.get("framework"), backend, f"{model_name}:{target_name}")
    inputs, outputs = triton_config.io_names(model, how)
    return [(name, triton_name) for name, triton_name in inputs + outputs if name != triton_name]


# -- the runner of the python backend -----------------------------------------------------------
def _registered_runner(runner_name: str | None) -> type | None:
    if not runner_name:
        return None
    from navbuild.engine.registry import default_registry

    return default_registry().runners.get(runner_name)


def runner_class_path(runner_name: str | None) -> str | None:
    """``module:Class`` of a registered runner, recorded so the server can import it directly."""
    cls = _registered_runner(runner_name)
    return f"{cls.__module__}:{cls.__qualname__}" if cls else None


def loads_source(target: Mapping[str, Any]) -> bool | None:
    """Whether the target's runner loads the model's own code (``model.entry``) besides its files.

    A runner says so with a class attribute ``loads_source``; for one that does not say, None
    (unknown): the writers then carry the source when they can.
    """
    flag = getattr(_registered_runner(target.get("runner")), "loads_source", None)
    return None if flag is None else bool(flag)


def project_root(status: Mapping[str, Any], given: Path | None = None) -> Path | None:
    """``given``, else the status's ``root`` (None inside a package)."""
    if given is not None:
        return Path(given)
    return Path(status["root"]) if status.get("root") else None


def runner_spec(status: Mapping[str, Any], model_name: str, target_name: str, *,
                artifact: str | None = "artifact", source: str | None = None) -> dict[str, Any]:
    """What a process needs to load the target's runner (the content of navbuild_model.json).

    ``artifact`` and ``source`` are folders relative to the spec's own folder (None: absent).
    """
    model = model_status(status, model_name)
    target = model["targets"][target_name]
    return {
        "format": SPEC_FORMAT,
        "model": {key: model.get(key) for key in
                  ("framework", "entry", "inputs", "outputs", "max_batch_size", "batch_dim", "dynamic_axes")}
        | {"name": model_name},
        "target": target_name,
        "runner": target.get("runner"),
        "runner_class": runner_class_path(target.get("runner")),
        "precision": target.get("precision", "fp32"),
        "device": target.get("device", "cpu"),
        "artifact": artifact,
        "source": source,
    }


def _runner_class(spec: Mapping[str, Any]) -> type:
    """The class recorded in ``runner_class`` (imported directly: the server need not load every rule
    family); if it moved, the runner registered under that name."""
    from navbuild.engine.registry import default_registry

    path = spec.get("runner_class")
    if path:
        module_name, _, qualname = path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj
        except (ImportError, AttributeError):
            pass
    name = spec.get("runner")
    runners = default_registry().runners
    if name in runners:
        return runners[name]
    raise DeployError(f"runner {name!r} of {spec['model']['name']}:{spec['target']} is not registered "
                      f"here; known: {', '.join(sorted(runners)) or 'none'}")


def make_runner(spec: Mapping[str, Any], *, artifact_dir: Path | None, root: Path | None,
                device: str | None = None) -> Any:
    """A (not yet activated) navbuild runner for the spec written by ``runner_spec``."""
    from navbuild.rule import ModelSpec

    from navbuild import dynamic_axes

    model = spec["model"]
    axes, bounds = dynamic_axes.parse(model.get("dynamic_axes") or {})
    model_spec = ModelSpec(
        name=model["name"], framework=model.get("framework") or "", entry=model.get("entry") or "",
        root=Path(root) if root else Path.cwd(),
        inputs=tuple(t["name"] for t in model.get("inputs") or ()),
        outputs=tuple(t["name"] for t in model.get("outputs") or ()),
        batch_dim=model.get("batch_dim") if model.get("batch_dim") is not None else 0,
        max_batch_size=int(model.get("max_batch_size") or 0), dynamic_axes=axes, axis_bounds=bounds)
    cls = _runner_class(spec)
    return cls(artifact_dir, model_spec, device or spec.get("device") or "cpu", spec.get("precision") or "fp32")


# -- writing ------------------------------------------------------------------------------------
def _target_dir(model_name: str, target_name: str, target: Mapping[str, Any]) -> Path:
    folder = target.get("dir")
    if not folder or not Path(folder).is_absolute():
        raise DeployError(f"{model_name}:{target_name} has no absolute 'dir' in the status (a status "
                          f"read from a package must be extracted first: read_package(...).extract(dest))")
    return Path(folder)


def _copy_checked(src: Path, dest: Path, expected: str | None, label: str) -> None:
    if not src.is_file():
        raise DeployError(f"{label}: file {src} is missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    if expected and digest_file(dest) != expected:
        raise DeployError(f"{label}: {src} does not match its digest in the status (the output folder "
                          f"changed after the build; rebuild it)")


def native_files(serving: TritonModel, files: Mapping[str, str]) -> dict[str, str]:
    """Target file name -> path under ``1/``, as declared: a file by its name, a folder (``dir/``) by
    every file below it. The first declared entry must be in the output."""
    layout: dict[str, str] = {}
    for index, (source, dest) in enumerate(serving.files.items()):
        if source.endswith("/"):
            found = {n: dest + n[len(source):] for n in files if n.startswith(source)}
        else:
            found = {source: dest} if source in files else {}
        if index == 0 and not found:
            raise DeployError(f"expected {source} in the output for the {serving.backend} backend, "
                              f"found {sorted(files) or 'none'}")
        layout.update(found)
    return layout


def _copy_source(root: Path, model: Mapping[str, Any], dest: Path, label: str) -> None:
    """The entry's folder (relative to the project root) copied under ``dest``."""
    entry_path = entry_file(model.get("entry") or "")
    src = (root / entry_path).resolve()
    if not src.is_file():
        raise DeployError(f"{label}: the model's entry file {src} is missing")
    rel = Path(entry_path).parent
    if rel == Path("."):  # the entry sits in the project root: take that file only
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / src.name)
    else:
        shutil.copytree(src.parent, dest / rel, ignore=SOURCE_SKIP)


def needs_source(target: Mapping[str, Any], label: str, root: Path | None,
                 include_source: bool | None = None) -> bool:
    """Whether to carry the model's source for the target; an error if it is needed but unknown."""
    wanted = loads_source(target) if include_source is None else include_source
    if wanted is None:  # the runner does not say: carry the source when there is one
        wanted = root is not None or not target.get("files")
    if wanted and root is None:
        raise DeployError(f"{label} runs the model's source, but the status has no project 'root' (a "
                          f"package carries no source); deploy a serialized target or pass source_root")
    return wanted


def write_model_repository(status: Mapping[str, Any], model_name: str, repo_dir: Path, *,
                           target: str | None = None, strategy: str = "max-throughput",
                           triton_name: str | None = None, instance_kind: str = "auto",
                           instance_count: int = 1, dynamic_batching: bool = True,
                           max_queue_delay_us: int = 0, ort_tensorrt: bool = False,
                           backend: str = "auto", source_root: Path | None = None,
                           include_source: bool | None = None) -> Path:
    """Write ``<repo_dir>/<triton_name>/`` for the selected (or given) target; returns that folder.

    backend       ``auto`` (the backend the target's rule declares, else ``python``), ``python``
                  (any target, through its runner) or the declared backend's name
    source_root   project root, for runners that load the model's code (default: status["root"])
    include_source  python backend: copy the entry's folder to ``1/source/`` (None: when the runner
                  declares ``loads_source``, or does not say and the root is known)

    An existing model folder of that name is replaced whole, through a rename.
    """
    name, entry = deployed_target(status, model_name, target=target, strategy=strategy)
    label = f"{model_name}:{name}"
    model = model_status(status, model_name)
    chosen = serving(entry, model.get("framework"), backend, label)
    on_python = chosen.backend == triton_config.PYTHON.backend
    if on_python and not entry.get("runner"):
        raise DeployError(f"{label} names no runner, so the python backend cannot run it")
    try:
        config = triton_config.build_config(
            model, entry, name=triton_name or model_name, serving=chosen, instance_kind=instance_kind,
            instance_count=instance_count, dynamic_batching=dynamic_batching,
            max_queue_delay_us=max_queue_delay_us, ort_tensorrt=ort_tensorrt)
    except triton_config.TritonConfigError as exc:
        raise DeployError(f"{label}: {exc}") from None

    files: dict[str, str] = dict(entry.get("files") or {})
    repo_dir = Path(repo_dir)
    repo_dir.mkdir(parents=True, exist_ok=True)
    final = repo_dir / (triton_name or model_name)
    staging = _staging_dir(repo_dir, final.name)
    try:
        version_dir = staging / VERSION
        version_dir.mkdir()
        if on_python:
            root = project_root(status, source_root)
            with_source = needs_source(entry, label, root, include_source)
            if files:
                src_dir = _target_dir(model_name, name, entry)
                for file_name, digest in sorted(files.items()):
                    _copy_checked(src_dir / file_name, version_dir / "artifact" / file_name, digest, label)
            if with_source:
                _copy_source(root, model, version_dir / "source", label)
            spec = runner_spec(status, model_name, name, artifact="artifact" if files else None,
                               source="source" if with_source else None)
            (version_dir / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
            shutil.copyfile(TEMPLATE, version_dir / "model.py")
        else:
            src_dir = _target_dir(model_name, name, entry)
            try:
                layout = native_files(chosen, files)
            except DeployError as exc:
                raise DeployError(f"{label}: {exc}") from None
            for file_name, dest_name in sorted(layout.items()):
                _copy_checked(src_dir / file_name, version_dir / dest_name, files[file_name], label)
        (staging / "config.pbtxt").write_text(triton_config.config_text(config))
        os.chmod(staging, 0o755)
        _swap_in(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _staging_dir(repo_dir: Path, name: str) -> Path:
    """A fresh folder beside the repository (Triton scans every folder inside it), or inside it,
    hidden, when the parent is not writable."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".navbuild-{name}.", dir=repo_dir.parent))
    except PermissionError:
        return Path(tempfile.mkdtemp(prefix=f".navbuild-{name}.", dir=repo_dir))


def _swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` with renames (Triton never sees a half-written folder)."""
    old = None
    if final.exists():
        old = staging.with_name(staging.name + ".old")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_repositories(status: Mapping[str, Any], repo_dir: Path, *, models: list[str] | None = None,
                             strategy: str = "max-throughput", **options: Any) -> list[Path]:
    """``write_model_repository`` for each model (all of the status by default).

    A model that cannot be deployed does not stop the others: they are written, then one
    DeployError lists every model that was not.
    """
    names = models if models else sorted(status.get("models") or {})
    written, errors = [], []
    for name in names:
        try:
            written.append(write_model_repository(status, name, repo_dir, strategy=strategy, **options))
        except DeployError as exc:
            errors.append(str(exc))
    if errors:
        done = f"wrote {', '.join(p.name for p in written)}; " if written else ""
        raise DeployError(done + "not deployed: " + "; ".join(errors))
    return written
