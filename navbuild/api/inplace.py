"""In-place optimization: ``navbuild.Module`` wraps the ``nn.Module``s of a pipeline,
``navbuild.optimize`` runs the pipeline on a dataloader and builds each wrapped module on the
store, ``navbuild.load_optimized`` swaps in each module's best correct runner.

A ``Module`` is a transparent proxy (``wrapt.ObjectProxy``): it passes ``isinstance`` checks, can be
assigned where an ``nn.Module`` is expected, and forwards every call unchanged until it is told
otherwise. While ``optimize`` runs the pipeline it records each call's arguments (after
``input_mapping``) and outputs; each module then becomes a model of one project (``project.py``),
so modules build in parallel with ``jobs`` and a module whose export crashes fails alone. Once
optimized, a call whose arguments match what was recorded (structure, constants, dtypes, shapes
within the recorded range) runs the selected runner; any other call runs the original code.
"""
from __future__ import annotations

import copy
import sys
from typing import Any, Callable, Iterable

import wrapt

from navbuild.api import calls
from navbuild.api.config import LABEL, OptimizeConfig, strategy_of
from navbuild.api.recording import STRUCTURE_DIFFERS, Recording
from navbuild.engine.config import ConfigError

DEFAULT_STRATEGY = "min-latency"  # a pipeline calls its modules one request at a time
_REGISTRY: dict[str, "Module"] = {}


class Module(wrapt.ObjectProxy):
    """Wraps an ``nn.Module`` inside a pipeline for in-place optimization.

    name            the module's model name in the store and the reports (default: its class name)
    input_mapping   ``fn((*args, kwargs)) -> (*args, kwargs)``: the call the optimized artifact takes
    output_mapping  ``fn(output) -> what the pipeline expects``, applied to the optimized artifact's
                    output (plain tuples, lists and dicts), e.g. ``lambda out: BaseModelOutput(**out)``
    forward_func    the name of the method the pipeline really calls (e.g. "forward" when another
                    method calls ``self.forward(...)`` rather than ``self(...)``); None: the module call
    batching        overrides OptimizeConfig.batching for this module
    precision       a hint: the formats that can build this precision build it ("fp16", "int8"),
                    the others their usual precisions; the module's table says which did which
    optimize_config this module's OptimizeConfig (else ``navbuild.optimize``'s); also a property
    """

    def __init__(self, module: Any, name: str | None = None, input_mapping: Callable | None = None,
                 output_mapping: Callable | None = None, forward_func: str | None = None,
                 batching: bool | None = None, precision: str | None = None,
                 optimize_config: OptimizeConfig | None = None) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"navbuild.Module wraps a torch.nn.Module, not {type(module).__name__}")
        super().__init__(module)
        from navbuild.api.project import default_model_name, safe_model_name

        self._self_name = safe_model_name(name) if name else _free_name(default_model_name(type(module)))
        self._self_input_mapping = input_mapping
        self._self_output_mapping = output_mapping
        self._self_forward_func = forward_func
        self._self_batching = batching
        self._self_precision = precision
        self._self_precision_note: str | None = None  # which formats build the precision, after optimize
        self._self_refused: str | None = None  # why its configuration cannot be built
        self._self_optimize_config = optimize_config
        self._self_recording: Recording | None = None  # while optimize runs the pipeline
        self._self_recorded: Recording | None = None  # the last optimize's: what the runner may serve
        self._self_optimized: Any = None  # package.OptimizedModel once load_optimized chose a runner
        self._self_package: Any = None
        self._self_target: str | None = None
        self._self_reason: str | None = "not optimized yet: call navbuild.optimize(pipeline, dataloader)"
        self._self_fallbacks = 0
        self._self_fallback_reason: str | None = None
        self._self_forward = None
        if forward_func is not None:
            self._self_forward = getattr(module, forward_func)  # the bound original
            object.__setattr__(module, forward_func, self._intercept_method)  # shadows it on this instance
        _REGISTRY[self._self_name] = self

    # -- what users read ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._self_name

    @property
    def optimize_config(self) -> OptimizeConfig | None:
        return self._self_optimize_config

    @optimize_config.setter
    def optimize_config(self, value: OptimizeConfig | None) -> None:
        self._self_optimize_config = value

    @property
    def package(self) -> Any:
        """The ``Package`` of its last optimize (None before)."""
        return self._self_package

    @property
    def is_optimized(self) -> bool:
        return self._self_optimized is not None

    @property
    def optimized_target(self) -> str | None:
        """The target it runs, after load_optimized (None: the original code runs)."""
        return self._self_target

    @property
    def optimized_reason(self) -> str | None:
        """Why it keeps its original code (None once a target runs)."""
        return self._self_reason

    @property
    def fallbacks(self) -> int:
        """Calls that ran the original code after load_optimized (arguments outside what was recorded)."""
        return self._self_fallbacks

    @property
    def fallback_reason(self) -> str | None:
        """Why the last such call ran the original code (the first one also printed it)."""
        return self._self_fallback_reason

    # -- calls -------------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._self_forward_func is not None:  # the module's own call reaches the intercepted method
            return self.__wrapped__(*args, **kwargs)
        return self._intercept(args, kwargs)

    def _intercept_method(self, *args: Any, **kwargs: Any) -> Any:
        return self._intercept(args, kwargs)

    def _original(self, args: tuple, kwargs: dict) -> Any:
        if self._self_forward is not None:
            return self._self_forward(*args, **kwargs)
        return self.__wrapped__(*args, **kwargs)

    def _mapped(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self._self_input_mapping is None:
            return args, kwargs
        mapped = self._self_input_mapping((*args, kwargs))
        return calls.call_args(tuple(mapped))

    def _intercept(self, args: tuple, kwargs: dict) -> Any:
        if self._self_optimized is not None:
            mapped = self._mapped(args, kwargs)
            feed = self._self_optimized.bind(*mapped)  # matched against the recorded structure
            refusal = STRUCTURE_DIFFERS if feed is None else self._self_recorded.leaves_refusal(list(feed.values()))
            if refusal is None:
                mapping = self._self_output_mapping
                output = self._self_optimized.run_feed(feed, classes={} if mapping else None)
                return mapping(output) if mapping else output
            if not self._self_fallbacks:  # once: a pipeline may call it so a thousand times
                print(f"navbuild: {self.name} runs its original code ({self._self_target} serves only what "
                      f"optimize recorded): {refusal}", file=sys.stderr)
            self._self_fallback_reason = refusal
            self._self_fallbacks += 1
            return self._original(args, kwargs)
        output = self._original(args, kwargs)
        if self._self_recording is not None:
            self._self_recording.add(*self._mapped(args, kwargs), output)
        return output

    # -- optimize ----------------------------------------------------------------------------------
    def _start_recording(self, limit: int) -> None:
        self._unload()
        self._self_package = None
        self._self_recording = Recording(limit=limit)

    def _config(self, default: OptimizeConfig) -> OptimizeConfig:
        config = self._self_optimize_config or default
        if self._self_batching is not None:
            config = config.clone(batching=self._self_batching)
        if self._self_precision is not None:  # a hint: the formats that can build it do (precision.py)
            from navbuild.api.precision import hinted
            from navbuild.api.project import format_rules

            try:
                config, self._self_precision_note = hinted(config, self._self_precision, format_rules("torch"))
            except ConfigError as exc:  # this module is not built; the others are
                self._self_precision_note = None
                self._self_refused = str(exc)
        return config

    def _captured(self) -> Any:
        """The module the engine builds from: without the intercepting method on the instance."""
        module = self.__wrapped__
        if self._self_forward_func is None:
            return module
        clone = copy.copy(module)
        vars(clone).pop(self._self_forward_func, None)
        return clone

    def load_optimized(self, strategy: Any = None, *, target: str | None = None, device: str | None = None,
                       config: OptimizeConfig | None = None, cuda_graphs: bool = False) -> str | None:
        """Run ``target``, or the target ``strategy`` selects (min-latency by default), from now on;
        returns it, or None when the module keeps its original code (``optimized_reason`` says why).
        Without an optimize in this process, its last optimize is looked up in the store of
        ``config``'s workspace (default: its ``optimize_config``'s, else the current folder).
        ``cuda_graphs``: replay one CUDA graph per input shape (a GPU runner that can be captured;
        a pipeline that calls the module with one shape gains most)."""
        from navbuild.api.package import PackageError

        self._unload()
        package = self._self_package or self._recall(config)
        if package is None:
            return None
        try:
            target = target or package.selected(strategy_of(strategy, DEFAULT_STRATEGY))
            if target not in package.targets:
                raise PackageError(f"module {self.name} has no target {target!r}; it has {sorted(package.targets)}")
            if package.targets[target].format == "torch":
                self._self_reason = f"its eager PyTorch code is its best target ({target})"
                return None
            self._self_optimized = package.get_model(target=target, device=device, cuda_graphs=cuda_graphs)
        except PackageError as exc:
            self._self_reason = str(exc)
            return None
        self._self_target, self._self_reason = target, None
        return target

    def _recall(self, config: OptimizeConfig | None) -> Any:
        """This module's last optimize, from the store (``remembered.py``); None: the reason is set."""
        from navbuild.api import remembered

        if self._self_recorded is not None:  # optimized in this process, without a package: its reason holds
            return None

        try:
            found = remembered.recall(self, config or self._self_optimize_config or OptimizeConfig())
        except remembered.NotRecalled as exc:
            self._self_reason = str(exc)
            return None
        self._self_package, self._self_recorded = found.package, found.recorded
        return found.package

    def _unload(self) -> None:
        if self._self_optimized is not None:
            self._self_optimized.close()
        self._self_optimized, self._self_target = None, None
        self._self_fallbacks, self._self_fallback_reason = 0, None


def _free_name(base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... when another module already has it (unnamed wrappers)."""
    name, index = base, 1
    while name in _REGISTRY:
        index += 1
        name = f"{base}_{index}"
    return name


# -- the pipeline -----------------------------------------------------------------------------------
def optimize(func: Callable[..., Any], dataloader: Iterable[Any], config: OptimizeConfig | None = None, *,
             jobs: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Run ``func`` on every item of ``dataloader`` (``(batch_size, sample)`` pairs, or samples: a
    tuple of arguments whose last item may be a dict of keyword arguments, a dict of keyword
    arguments, or one argument), recording what each ``navbuild.Module`` receives and returns; then
    build, check and profile each module's targets. Returns each module's ``Package`` by name (None
    for a module the pipeline did not call or whose calls cannot be recorded; its
    ``optimized_reason`` says why). Modules keep their original code until ``load_optimized``."""
    from navbuild.api import executor
    from navbuild.api.project import Workspace

    executor.refuse_nested_call()
    config = config or OptimizeConfig()
    if not isinstance(config, OptimizeConfig):
        raise ConfigError(LABEL, "config", f"must be a navbuild.OptimizeConfig, not {type(config).__name__}")
    config.check()
    modules = list(_REGISTRY.values())
    if not modules:
        raise ConfigError(LABEL, "func", "calls no navbuild.Module", "wrap the modules to optimize first: "
                          "pipeline.encoder = navbuild.Module(pipeline.encoder, name='encoder')")
    recordings = _record(func, dataloader, modules, config)
    workspace = Workspace(config)
    model_sources = [source for source in (_source(workspace, m, recordings[m.name], config) for m in modules)
                     if source is not None]
    if model_sources:
        _build(workspace, model_sources, config, jobs)
    if not quiet:
        _report(modules, recordings)
    return {module.name: module.package for module in modules}


def _record(func: Callable[..., Any], dataloader: Iterable[Any], modules: list[Module],
            config: OptimizeConfig) -> dict[str, Recording]:
    """Run the pipeline once over the dataloader with every module recording its calls."""
    import torch

    for module in modules:
        module._self_refused = None
        module._config(config).check()
        module._start_recording(module._config(config).sample_count)
    try:
        with torch.no_grad():
            for item in dataloader:
                args, kwargs = calls.call_args(_sample(item))
                func(*args, **kwargs)
    finally:
        recordings = {module.name: module._self_recording for module in modules}
        for module in modules:
            module._self_recorded, module._self_recording = module._self_recording, None
    return recordings


def _source(workspace: Any, module: Module, recording: Recording, config: OptimizeConfig) -> Any:
    """The module as a model of the project, or None (its ``optimized_reason`` says why)."""
    from navbuild.api import sources

    if module._self_refused:
        module._self_reason = module._self_refused
        return None
    if recording.call is None:
        module._self_reason = (f"its calls cannot be recorded: {recording.error}" if recording.error else
                               "the pipeline never called it while optimize ran (if it calls another "
                               "method than __call__, name it with forward_func=)")
        return None
    try:
        return sources.object_source(workspace, module.name, module._captured(), recording.samples,
                                     module._config(config), method=_method(module), reference=recording.reference)
    except (calls.CallError, ConfigError) as exc:
        module._self_reason = f"its calls cannot be recorded: {exc}"
        return None


def _method(module: Module) -> str | None:
    """The method the engine calls on the captured module (None: the module call)."""
    return module._self_forward_func if module._self_forward_func not in (None, "forward") else None


def _build(workspace: Any, model_sources: list[Any], config: OptimizeConfig, jobs: int) -> None:
    """One build for every module (in parallel with ``jobs``); each module gets its Package."""
    from navbuild.api import remembered
    from navbuild.api.single import package_of

    built = workspace.build(model_sources, config, jobs=jobs)
    mapping = workspace.mapping(model_sources, config)
    for source in model_sources:
        module = _REGISTRY[source.name]
        package = package_of(built, source.name)
        remembered.remember(built.session.store.root, source, module._self_recorded, mapping, _method(module))
        verify_func = module._config(config).verify_func
        if verify_func is not None:
            package.verify(verify_func)
        module._self_package = package
        module._self_reason = "optimized: call navbuild.load_optimized() to run its best target"
    built.session.close()  # file digests learned while collecting the statuses, for the next run


def load_optimized(strategy: Any = None, *, device: str | None = None, quiet: bool = False,
                   config: OptimizeConfig | None = None, cuda_graphs: bool = False) -> dict[str, str | None]:
    """Swap in each optimized module's best correct runner (``strategy``: min-latency by default).
    ``cuda_graphs``: each module's calls replay one CUDA graph per input shape where its runner can
    be captured (``Module.load_optimized``).

    A module not optimized in this process gets its last optimize from the store (``config``: where
    the workspace and store are; default each module's ``optimize_config``, else the current folder),
    unless its code or weights changed since. A module whose best target is the eager model itself,
    or that has no usable target, keeps its original code and says why (``module.optimized_reason``).
    Returns module name -> target (or None)."""
    chosen = {module.name: module.load_optimized(strategy, device=device, config=config, cuda_graphs=cuda_graphs)
              for module in _REGISTRY.values()}
    if not quiet:
        for module in _REGISTRY.values():
            what = module.optimized_target or f"original code ({module.optimized_reason})"
            print(f"navbuild: {module.name}: {what}", file=sys.stderr)
    return chosen


def registered() -> dict[str, Module]:
    """The wrapped modules by name (the latest wrapper of each name)."""
    return dict(_REGISTRY)


def forget(*names: str) -> None:
    """Stop optimizing the named modules (every module when none is named); they keep running
    whatever they run now."""
    for name in names or list(_REGISTRY):
        _REGISTRY.pop(name, None)


def _sample(item: Any) -> Any:
    """An item of an in-place dataloader: a ``(batch_size, sample)`` pair or the sample itself."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[0], bool):
        return item[1]
    return item


def _report(modules: list[Module], recordings: dict[str, Recording]) -> None:
    from navbuild.api.environment import console_output
    from navbuild.api.report import print_model
    from navbuild.view.console import console

    if console_output() == "none":
        return
    out = console()
    for module in modules:
        recording = recordings[module.name]
        note = (f"{recording.calls_seen} calls recorded" +
                (f", {recording.other_signatures} with other arguments (they keep the original code)"
                 if recording.other_signatures else "") +
                (f"; {module._self_precision_note}" if module._self_precision_note else ""))
        if module.package is None:
            out.print(f"[bold]module {module.name}[/]: not optimized: {module.optimized_reason}", highlight=False)
        else:
            print_model(out, module.package, title=f"module {module.name}", note=note, strategy=DEFAULT_STRATEGY)
