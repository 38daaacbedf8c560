"""``Package``: what an optimize returns, or what a ``.nav`` file holds, for one model.

It reads the build status (``navbuild.deploy.status``, schema ``navbuild-status/2``: per target its
status, reason, files and correctness) and the figures measured beside it (``navbuild-figures/1``:
per target its profile, per strategy the selection behind ``selected``; a ``.nav`` file keeps them in
``<name>.profile.json`` beside it). ``get_runner`` returns the activated runner of the target a
strategy selects; ``get_model`` a callable that takes what the original model takes and
returns what it returned (torch tensors in, torch tensors out, on their device).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from navbuild.api import calls
from navbuild.api.config import strategy_of

USABLE = ("built", "cached")
DEFAULT_STRATEGY = "max-throughput"


class PackageError(RuntimeError):
    """A package that has no usable target for what was asked; the message says why."""


@dataclass
class TargetStatus:
    """One target of a package, as the status records it."""

    name: str
    format: str
    precision: str
    status: str  # built, cached, skipped, failed, missing
    reason: str | None
    correct: bool | None  # None: not checked
    path: Path | None
    throughput: float | None  # best samples/s, when profiled
    latency_ms: float | None  # p50 at the smallest batch measured

    @property
    def usable(self) -> bool:
        return self.status in USABLE and self.correct is not False


class Package:
    """One model's build: targets with status, artifacts, selection, runners.

    status     the model's entry of the build status (``status["models"][name]``)
    figures    the model's entry of the measured figures (``figures["models"][name]``: profiles,
               selections, times), None when none were measured or kept
    records    this run's records of its targets, when it comes from an optimize in this process
    live       what the optimize knew of the live model: call structure, output tree, classes
    """

    def __init__(self, name: str, status: Mapping[str, Any], *, project_status: Mapping[str, Any],
                 root: Path | None, records: Mapping[str, Any] | None = None,
                 live: Mapping[str, Any] | None = None, figures: Mapping[str, Any] | None = None,
                 project_figures: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.status = dict(status)
        self.figures = dict(figures or {})
        self.project_status = project_status
        self.project_figures = project_figures
        self.root = root
        self.records = dict(records or {})
        self.live = dict(live or {})
        self.verified: dict[str, bool] = {}  # verify_func's verdict per target, when one was given

    # -- what was built ----------------------------------------------------------------------------
    @property
    def targets(self) -> dict[str, TargetStatus]:
        found = {}
        for short, entry in (self.status.get("targets") or {}).items():
            record = self.records.get(f"{self.name}:{short}")
            status, reason = entry.get("status"), entry.get("reason")
            if record is not None:  # this run's word: built or cached, or why not
                status, reason = record.status, record.reason
            correctness = entry.get("correctness")
            check = self.records.get(f"{self.name}:{short}.check")
            if check is not None and check.status == "failed" and status in USABLE:
                status, reason = "failed", f"correctness: {check.reason}"
            points = (self.profile(short) or {}).get("points") or []
            best = max((p.get("throughput", 0.0) for p in points), default=None)
            smallest = min(points, key=lambda p: p.get("batch_size", 0), default=None)
            found[short] = TargetStatus(
                name=short, format=entry.get("format", short), precision=entry.get("precision", "fp32"),
                status=status or "missing", reason=reason,
                correct=None if correctness is None else bool(correctness.get("passed")),
                path=Path(entry["dir"]) if entry.get("dir") and status in USABLE else None,
                throughput=best, latency_ms=smallest.get("p50_ms") if smallest else None)
        return found

    @property
    def artifacts(self) -> dict[str, Path]:
        """Folders of the targets that were built (or found in the store)."""
        return {name: t.path for name, t in self.targets.items() if t.path is not None}

    def profile(self, target: str) -> dict[str, Any] | None:
        """The profile of ``target`` (a dict, ``navbuild-profile/3``), None when it was not profiled:
        from the figures, or from the status of a package written before they moved out of it."""
        measured = ((self.figures.get("targets") or {}).get(target) or {}).get("profile")
        return measured or ((self.status.get("targets") or {}).get(target) or {}).get("profile")

    def is_empty(self) -> bool:
        return not any(t.usable for t in self.targets.values())

    def selected(self, strategy: Any = None) -> str:
        """The target ``strategy`` chooses among the correct (and verified) targets: the build's own
        choice (``selected``) while it is still among those tied with the best, as the build chose."""
        from navbuild.deploy.status import select

        views = self.targets
        usable = {n: t for n, t in (self.status.get("targets") or {}).items()
                  if views[n].usable and self.verified.get(n, True)}
        chosen = strategy_of(strategy, DEFAULT_STRATEGY)
        profiled = {n: {**t, "profile": self.profile(n)} for n, t in usable.items() if self.profile(n)}
        if profiled:
            recorded = (self.figures.get("selections") or {}).get(chosen.name) or {}
            selected, _ = select(profiled, [chosen], order=list(self.status.get("targets") or {}),
                                 previous=self.status.get("selected"), margin_pct=recorded.get("margin_pct"))
            if selected:
                return next(iter(selected.values()))
        if usable:  # nothing profiled (profiling off): the first correct target in declaration order
            return next(iter(usable))
        raise PackageError(f"model {self.name}: no target is built and correct; " + self._reasons())

    def _reasons(self) -> str:
        reasons = [f"{n}: {t.status}" + (f" ({t.reason})" if t.reason else "") for n, t in self.targets.items()]
        return "; ".join(reasons) or "no target was declared"

    # -- running ----------------------------------------------------------------------------------
    def get_runner(self, strategy: Any = None, *, target: str | None = None, device: str | None = None,
                   activate: bool = True) -> Any:
        """The runner of ``target``, or of the target ``strategy`` selects (max-throughput by default)."""
        from navbuild.deploy.triton_repo import loads_source, make_runner, runner_spec

        name = target or self.selected(strategy)
        entry = (self.status.get("targets") or {}).get(name)
        if entry is None or not self.targets[name].usable:
            raise PackageError(f"model {self.name}: target {name!r} is not usable; " + self._reasons())
        if loads_source(entry) and self.root is None:
            raise PackageError(f"model {self.name}: {name} runs the model's own code, which a package does not "
                               "carry; choose a serialized target (target=...)")
        spec = runner_spec({"models": {self.name: self.status}}, self.name, name)
        runner = make_runner(spec, artifact_dir=Path(entry["dir"]), root=self.root, device=device)
        return runner.activate() if activate else runner

    def get_model(self, strategy: Any = None, *, target: str | None = None, device: str | None = None,
                  cuda_graphs: bool = False) -> "OptimizedModel":
        """A callable over the selected target that takes and returns what the original model does,
        tensors kept on their device; ``cuda_graphs``: replay a CUDA graph per input shape (GPU
        runners that can be captured)."""
        runner = self.get_runner(strategy, target=target, device=device)
        return OptimizedModel(runner, self.live, cuda_graphs=cuda_graphs)

    def verify(self, verify_func: Callable[[list, list], bool]) -> dict[str, bool]:
        """Run every usable target on the samples; ``verify_func(outputs, reference)`` judges it."""
        from navbuild import tensors

        if not self.status.get("samples") or not self.status.get("reference"):
            return {}  # nothing was built to compare with: every target already says why
        samples = tensors.load(self.status["samples"]["path"])
        reference = tensors.load(self.status["reference"]["path"])
        for name, target in self.targets.items():
            if not target.usable:
                continue
            runner = self.get_runner(target=name)
            try:
                outputs = [runner.infer(sample) for sample in samples]
            finally:
                runner.deactivate()
            self.verified[name] = bool(verify_func(outputs, reference))
        return dict(self.verified)


class OptimizedModel:
    """The original model's calling convention over a runner: torch tensors in, torch tensors out.

    With the call structure of an optimize in this process (or remembered in the store), it takes
    the same arguments as the model and returns the same structure (Hugging Face and named-tuple
    outputs rebuilt from their class); without it (a package loaded from a file) it takes the inputs
    positionally and returns a tensor, or a tuple of tensors.

    The tensors go to the runner as they are (``Runner.run``): a CUDA input never visits the host,
    and the outputs come back on the input's device, in the original model's types. What a call
    costs in Python is decided once: the structure is matched by a ``calls.Binder`` made from the
    recorded call, the runner keeps its feed check per input signature, and outputs are named by
    position. ``cuda_graphs=True`` replays one CUDA graph per input signature (``graphs.py``).
    """

    def __init__(self, runner: Any, live: Mapping[str, Any], *, cuda_graphs: bool = False) -> None:
        self.runner = runner
        self.call = live.get("call")
        self.output_tree = live.get("output_tree")
        self.output_classes = live.get("output_classes") or {}
        self.output_dtypes = live.get("output_dtypes")
        from navbuild.tensors import to_torch

        self._to_torch = to_torch
        self._binder = calls.Binder(self.call) if self.call is not None else None
        self._names = list(self.call.names) if self.call is not None else []
        self._graphed = None
        if cuda_graphs:
            from navbuild.api.graphs import GraphedRunner

            self._graphed = GraphedRunner(runner, f"model {runner.model.name}")
            if self._graphed.reason is not None:
                print(f"navbuild: model {runner.model.name} runs without CUDA graphs: {self._graphed.reason}",
                      file=sys.stderr)

    @property
    def cuda_graphs(self) -> str | None:
        """Whether calls replay CUDA graphs: None when not asked for, "on", or why not."""
        if self._graphed is None:
            return None
        return self._graphed.reason or "on"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(args, kwargs)

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any] | None:
        """The call's tensors by the runner's input names (in the recorded order), or None when its
        structure or constants are not the recorded ones. Without a recorded call: positional
        tensors take the model's input names in order, keyword tensors their own names."""
        if self._binder is None:
            names = list(self.runner.model.inputs) or [f"input__{i}" for i in range(len(args))]
            return {**dict(zip(names, args)), **kwargs}
        leaves = self._binder.leaves(args, kwargs)
        return None if leaves is None else dict(zip(self._names, leaves))

    def run(self, args: tuple, kwargs: dict, *, classes: Mapping[str, type] | None = None) -> Any:
        feed = self.bind(args, kwargs)
        if feed is None:
            raise calls.CallError("called with other arguments than the samples it was optimized for "
                                  "(structure or constant values differ)")
        return self.run_feed(feed, classes=classes)

    def run_feed(self, feed: dict[str, Any], *, classes: Mapping[str, type] | None = None) -> Any:
        """The runner on ``feed`` (made by ``bind``), its outputs as the model returns them, on the
        device of the first input."""
        outputs = self._graphed.run(feed) if self._graphed is not None else None
        if outputs is None:
            outputs = self.runner.run(feed)
        results = [self._to_torch(value) for value in outputs.values()]
        device = getattr(next(iter(feed.values()), None), "device", None)
        if device is not None and results and results[0].device != device:
            results = [result.to(device) for result in results]
        if self.output_dtypes:
            results = [r if r.dtype == dtype else r.to(dtype) for r, dtype in zip(results, self.output_dtypes)]
        if self.output_tree is None:
            return results[0] if len(results) == 1 else tuple(results)
        return calls.rebuild(self.output_tree, results, self.output_classes if classes is None else classes)

    def close(self) -> None:
        self._graphed = None
        self.runner.deactivate()
