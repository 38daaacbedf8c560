"""The project an API call builds: its models described as navbuild.toml describes them.

A ``Workspace`` is a project root (``OptimizeConfig.workspace``, default the current folder): the
store and ``navbuild-out/`` live under it as for a navbuild.toml in that folder, so the CLI and the
API share what they built. Each model becomes a ``ModelSource`` (entry, samples, sources, inputs,
outputs, settings); ``build`` turns the sources into one mapping, opens it with the engine's
validator (``engine.project.open_mapping``), and brings every target up to date through the one
scheduler (``engine/scheduler.py``), whose actions run in the engine's worker processes; the run's
keys and digests go to ``.navbuild-api/navbuild.lock`` (the lock of the models built from Python).
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from navbuild.api import executor, objects
from navbuild.api.config import LABEL, OptimizeConfig, renamed
from navbuild.engine.config import ConfigError
from navbuild.engine.lockfile import LOCK_NAME
from navbuild.engine.options import Options
from navbuild.engine.records import Record
from navbuild.engine.scheduler import FINISHED, Event, LocalExecutor, Scheduler
from navbuild.engine.session import Session

PROJECT_NAME = "navbuild-api"
SAMPLES_FILE = "samples.tensors"


@dataclass
class ModelSource:
    """One model as the engine will see it, plus what only the API knows about it."""

    name: str
    framework: str
    entry: str
    samples: str
    sources: list[str]
    inputs: list[str]
    outputs: list[str]
    max_batch_size: int
    dynamic_axes: dict[str, dict[int, Any]]  # labels, or tables with bounds (navbuild.dynamic_axes)
    config: OptimizeConfig
    identity: str | None = None  # a live object's identity (objects.py); None for file entries
    live: dict[str, Any] = field(default_factory=dict)  # call, output tree and classes (calls.py)


@dataclass
class BuildResult:
    session: Session
    records: dict[str, Record]
    sources: dict[str, ModelSource]


class Workspace:
    def __init__(self, config: OptimizeConfig) -> None:
        self.root = Path(config.workspace if config.workspace is not None else os.getcwd()).resolve()

    @property
    def lock_path(self) -> Path:
        """The lock of the models built from Python here: some of them at each call, so a call keeps
        the entries of the models it does not name."""
        return self.root / objects.API_DIR / LOCK_NAME

    def model_folder(self, name: str) -> Path:
        return objects.folder(self.root, name)

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def write_samples(self, name: str, samples: list[dict[str, Any]]) -> str:
        """The samples in a deterministic file under the model's folder; its path from the root."""
        from navbuild import tensors

        path = self.model_folder(name) / SAMPLES_FILE
        objects.write_if_changed(path, tensors.dumps(samples))
        return self.relative(path)

    # -- building ---------------------------------------------------------------------------------
    def mapping(self, models: Sequence[ModelSource], config: OptimizeConfig) -> dict[str, Any]:
        data = config.project_table(PROJECT_NAME)
        data["models"] = {}
        for model in models:
            data["models"][model.name] = model.config.model_table(
                framework=model.framework, entry=model.entry, samples=model.samples, sources=model.sources,
                inputs=model.inputs, outputs=model.outputs, max_batch_size=model.max_batch_size,
                dynamic_axes=model.dynamic_axes, known=format_rules(model.framework))
        return data

    def open(self, models: Sequence[ModelSource], config: OptimizeConfig, isolate: bool | None = None) -> Session:
        """The models as one project (``engine.project.open_mapping``); ``isolate`` (default: unless
        NAVBUILD_USE_MULTIPROCESSING=0) runs its actions in the engine's worker processes."""
        from navbuild.api.environment import console_output
        from navbuild.engine.project import open_mapping

        verbose = config.verbose or console_output() == "logs"  # NAVIGATOR_CONSOLE_OUTPUT=logs
        options = Options(verbose=verbose, retry_failed=config.retry_failed,
                          isolate=executor.isolation_enabled() if isolate is None else isolate)
        try:
            return open_mapping(self.mapping(models, config), self.root, label=LABEL, options=options)
        except ConfigError as error:
            raise renamed(error, _label(error.key)) from None

    def build(self, models: Sequence[ModelSource], config: OptimizeConfig, *, jobs: int = 1,
              isolate: bool | None = None, on_done: Callable[[Record], None] | None = None,
              quiet: bool = False) -> BuildResult:
        """Build ``models``; while it runs, the console shows what runs now as the CLI does (a live
        display on a terminal, "still ..." lines elsewhere) unless ``quiet`` or
        ``NAVIGATOR_CONSOLE_OUTPUT=none``."""
        executor.refuse_nested_call()
        session = self.open(models, config, isolate)
        by_name = {m.name: m for m in models}
        written: dict[str, dict[str, str]] = {}
        writing = threading.Lock()  # targets go to workers from several threads with jobs > 1

        def pickles_for(target: str) -> dict[str, str]:
            """A worker rebuilds a live object from a pickle written now, once per model and run."""
            source = by_name.get(target.split(":", 1)[0])
            if source is None or source.identity is None:
                return {}
            with writing:
                if source.name not in written:
                    digest = objects.write_pickle(self.root, source.name, source.identity)
                    written[source.name] = {source.identity: digest}
                return written[source.name]

        def finished(event: Event) -> None:
            if event.kind == FINISHED and on_done is not None:
                on_done(event.record)

        try:
            selected = session.graph.resolve([m.name for m in models])
            with _reporter(session, selected, quiet) as shown:
                scheduler = Scheduler(session, LocalExecutor(jobs, hook=executor.worker_hook(pickles_for)),
                                      listeners=[finished, shown], lock=self.lock_path, partial_lock=True)
                records = scheduler.build(selected)
        finally:
            session.close()
            for source in models:
                if source.name in written and source.identity is not None:
                    objects.pickle_path(self.root, source.name, source.identity).unlink(missing_ok=True)
        session.forget_keys()  # workers built what this session looked up as missing
        return BuildResult(session=session, records=records, sources=dict(by_name))


def _reporter(session: Session, selected: list[str], quiet: bool) -> Any:
    """The CLI's live display (``view/progress.py``), without its finished lines: the API prints
    its own table after the build."""
    from navbuild.api.environment import console_output
    from navbuild.view import progress
    from navbuild.view.console import console

    closure = session.graph.closure(selected)
    return progress.Reporter(console(stderr=True), total=len(closure), quiet=quiet or console_output() == "none",
                             kinds=progress.kinds_of(session, closure), finished_lines=False)


def _label(key: str) -> str:
    match = re.match(r"models\.([^.]+)\.", key)
    return f"{LABEL} of {match.group(1)!r}" if match else LABEL


def safe_model_name(text: str) -> str:
    """A model name navbuild.toml accepts (letters, digits, '-' and '_')."""
    return re.sub(r"[^0-9A-Za-z_-]", "_", text).strip("_") or "model"


def default_model_name(cls: type) -> str:
    """A model's name when none is given: its class name in lower case."""
    return safe_model_name(cls.__name__).lower()


# -- what the registry offers (the API asks it here only) ---------------------------------------------
def format_rules(framework: str) -> dict[str, Any]:
    """Format name -> rule that a model of ``framework`` may ask for."""
    from navbuild.engine.registry import default_registry

    return default_registry().formats(framework)


def reads_framework(framework: str) -> bool:
    """Whether an installed rule family gives reference outputs for ``framework``'s source models."""
    from navbuild.engine.registry import default_registry
    from navbuild.rule import ROLE_REFERENCE

    return default_registry().role(ROLE_REFERENCE, framework) is not None
