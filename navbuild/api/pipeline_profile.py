"""``navbuild.profile(pipeline, dataloader)`` after in-place optimization: the pipeline measured once
per way of running its modules, as Model Navigator's ``nav.profile`` goes through a pipeline's formats.

The combinations: ``original`` (every module runs its own code), ``best`` (each module the target
``load_optimized`` picks), then one per built format (``onnx``, ``torchscript-trace``...: the modules
that have a usable target of that name run it, the others their own code). Each is profiled with the
engine's profiler on the first item of the dataloader (the pipeline's batch is its own business, so
batch size 1 unless the profile options name others). The modules are left as they were, and the
figures go to a report (JSON, or YAML for a ``.yaml`` path) beside the build outputs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

ORIGINAL, BEST = "original", "best"
REPORT_SCHEMA = "navbuild-pipeline-profile/1"
REPORT_FILE = "navbuild-out/pipeline-profile.json"


@dataclass
class PipelineProfile:
    """Per combination: which target each module ran (None: its own code) and the figures."""

    runs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # combination -> ProfileResult
    report: Path | None = None

    def fastest(self) -> str | None:
        """The combination with the lowest p50 latency at the smallest batch measured."""
        timed = {label: result.points[0].p50_ms for label, result in self.results.items() if result.points}
        return min(timed, key=timed.__getitem__) if timed else None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "fastest": self.fastest(),
                "combinations": {label: {"modules": self.runs[label], "profile": self.results[label].to_dict()}
                                 for label in self.results}}


def combinations(modules: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, module name -> what to load)``: None for the module's own code, ``BEST`` for what
    load_optimized picks, else a target name."""
    found = [(ORIGINAL, {m.name: None for m in modules}), (BEST, {m.name: BEST for m in modules})]
    formats: list[str] = []
    for module in modules:
        for name, target in module.package.targets.items():
            if target.usable and target.format != "torch" and name not in formats:  # torch: the own code
                formats.append(name)
    for fmt in formats:
        found.append((fmt, {m.name: fmt if fmt in m.package.targets and m.package.targets[fmt].usable else None
                            for m in modules}))
    return found


def profile_pipeline(func: Callable[..., Any], dataloader: Iterable[Any], modules: list[Any], config: Any = None,
                     *, strategy: Any = None, report: str | Path | None = None, workspace: Path | None = None,
                     **options: Any) -> PipelineProfile:
    """Profile ``func`` once per combination of ``modules``' targets; see the module docstring."""
    from navbuild.api.calls import call_args
    from navbuild.measure.profiling import profile
    from navbuild.measure.settings import ProfileConfig

    config = config or ProfileConfig()
    if config.batch_sizes is None and config.sweep_up_to is None:
        config = dataclasses.replace(config, batch_sizes=(1,))
    item = next(iter(dataloader), None)
    if item is None:
        raise ValueError("profile: the dataloader yielded no sample")
    args, kwargs = call_args(_sample(item))
    device = "cuda" if any(_on_cuda(m) for m in modules) else "cpu"
    before = {m.name: m.optimized_target for m in modules}
    outcome = PipelineProfile()
    try:
        for label, plan in combinations(modules):
            outcome.runs[label] = {m.name: _load(m, plan[m.name], strategy) for m in modules}
            outcome.results[label] = profile(lambda: func(*args, **kwargs), [()], config, device=device,
                                             name=label, **options)
    finally:
        for module in modules:
            _load(module, before[module.name], strategy)
    path = Path(report) if report is not None else Path(workspace or Path.cwd()) / REPORT_FILE
    outcome.report = write_report(outcome, path)
    return outcome


def _load(module: Any, what: str | None, strategy: Any) -> str | None:
    if what is None:
        module._unload()
        return None
    if what == BEST:
        return module.load_optimized(strategy)
    return module.load_optimized(target=what)


def _on_cuda(module: Any) -> bool:
    return any(t.get("device") == "cuda" for t in (module.package.status.get("targets") or {}).values())


def write_report(outcome: PipelineProfile, path: Path) -> Path:
    """The figures as JSON, or YAML when ``path`` ends in ``.yaml``/``.yml`` (PyYAML then needed)."""
    data = outcome.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _sample(item: Any) -> Any:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[0], bool):
        return item[1]
    return item
