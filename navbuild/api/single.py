"""One model, optimized: ``navbuild.torch.optimize`` and ``navbuild.onnx.optimize`` come here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.api import calls, objects, sources
from navbuild.api.config import LABEL, OptimizeConfig, with_fields
from navbuild.api.package import Package
from navbuild.api.project import (BuildResult, ModelSource, Workspace, default_model_name, reads_framework,
                                  safe_model_name)
from navbuild.engine.config import ConfigError


def optimize_torch(model: Any, dataloader: Any, config: OptimizeConfig | None = None, *, name: str | None = None,
                   jobs: int = 1, quiet: bool = False, **fields: Any) -> Package:
    """A torch ``nn.Module`` (or a ``"file.py:function"`` entry that returns one), optimized.
    ``fields``: OptimizeConfig fields as keywords (``target_formats=...``), beside or instead of ``config``."""
    config = _checked(config, fields)
    workspace = Workspace(config)
    if isinstance(model, str):
        name = safe_model_name(name or Path(model.rsplit(":", 1)[0]).stem)
        source = sources.entry_source(workspace, name, model, dataloader, config)
    else:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise ConfigError(LABEL, "model", f"must be a torch.nn.Module or a 'file.py:function' entry, not "
                              f"{type(model).__name__}")
        name = safe_model_name(name) if name else default_model_name(type(model))
        samples = [calls.call_args(sample) for sample in sources.take(dataloader, config.sample_count, name)]
        source = sources.object_source(workspace, name, model, samples, config)
    return _build_one(workspace, source, config, jobs, quiet)


def optimize_onnx(path: str | Path, dataloader: Any, config: OptimizeConfig | None = None, *,
                  name: str | None = None, jobs: int = 1, quiet: bool = False, **fields: Any) -> Package:
    """An ONNX file as the source model, declared as navbuild.toml declares one (``framework =
    "onnx"``, ``entry = "path/model.onnx"``): it needs a rule family that reads ONNX-file sources."""
    config = _checked(config, fields)
    if not reads_framework("onnx"):
        raise ConfigError(LABEL, "model", "no installed rule family reads ONNX files as source models "
                          "(framework 'onnx')", "install one that does, or optimize the torch model instead")
    workspace = Workspace(config)
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(LABEL, "model", f"file {path} does not exist")
    name = safe_model_name(name or path.stem)
    try:
        entry = workspace.relative(path)
    except ValueError:  # outside the workspace: a copy inside it is what the build depends on
        copy = workspace.model_folder(name) / path.name
        objects.write_if_changed(copy, path.read_bytes())
        entry = workspace.relative(copy)
    source = sources.entry_source(workspace, name, entry, dataloader, config, framework="onnx")
    return _build_one(workspace, source, config, jobs, quiet)


def optimize_entry(framework: str, model: Any, dataloader: Any, config: OptimizeConfig | None = None, *,
                   name: str | None = None, jobs: int = 1, quiet: bool = False, **fields: Any) -> Package:
    """A model of ``framework`` (``tensorflow``, ``jax``) given as ``"file.py:function"`` (relative to
    the workspace), whose function returns the model as navbuild.toml's ``entry`` does."""
    config = _checked(config, fields)
    if not isinstance(model, str):
        raise ConfigError(LABEL, "model", f"a {framework} model is given as 'file.py:function' (relative to the "
                          f"workspace), not a {type(model).__name__} object", "put the code that builds it in a "
                          "function of a file and name that function")
    if not reads_framework(framework):
        raise ConfigError(LABEL, "model", f"no installed rule family reads {framework} models",
                          f"install navbuild's {framework} extra")
    workspace = Workspace(config)
    name = safe_model_name(name or Path(model.rsplit(":", 1)[0]).stem)
    source = sources.entry_source(workspace, name, model, dataloader, config, framework=framework)
    return _build_one(workspace, source, config, jobs, quiet)


def _checked(config: OptimizeConfig | None, fields: dict[str, Any] | None = None) -> OptimizeConfig:
    config = with_fields(config, fields or {})
    config.check()
    return config


def _build_one(workspace: Workspace, source: ModelSource, config: OptimizeConfig, jobs: int,
               quiet: bool) -> Package:
    result = workspace.build([source], config, jobs=jobs, quiet=quiet)
    package = package_of(result, source.name)
    result.session.close()  # file digests learned while collecting the status, for the next run
    if config.verify_func is not None:
        package.verify(config.verify_func)
    if not quiet:
        from navbuild.api.report import print_model
        from navbuild.view.console import console

        print_model(console(), package)
    return package


def package_of(result: BuildResult, name: str) -> Package:
    from navbuild.deploy import status

    collected, figures = status.collect_all(result.session, models=[name])
    records = {n: r for n, r in result.records.items() if n.split(":", 1)[0] == name}
    return Package(name, collected["models"][name], project_status=collected, root=result.session.project.root,
                   records=records, live=result.sources[name].live, figures=figures["models"][name],
                   project_figures=figures)
