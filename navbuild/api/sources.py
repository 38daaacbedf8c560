"""Models and dataloaders of an API call turned into ``ModelSource``s: entries, samples, names.

A live ``nn.Module`` gets a generated entry (``objects.py``) keyed by its identity; a model given
as ``"file.py:function"`` is used as navbuild.toml would use it, so both faces share its builds.
Samples become a deterministic ``.tensors`` file (or stay the ``file.py:function`` / ``.tensors``
file they were given as).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from navbuild.api import calls, objects
from navbuild.api.config import LABEL, OptimizeConfig
from navbuild.api.identity import model_identity
from navbuild.api.project import ModelSource, Workspace
from navbuild.engine.config import ConfigError


def take(dataloader: Iterable[Any], count: int, model: str) -> list[Any]:
    """At most ``count`` samples of a dataloader (any iterable) of ``model``."""
    fix = "pass an iterable of samples, e.g. [torch.randn(1, 3, 32, 32)] or a torch DataLoader"
    try:
        batches = iter(dataloader)
    except TypeError:
        raise ConfigError(LABEL, "dataloader", f"model {model}: the dataloader is "
                          f"{'missing (None)' if dataloader is None else 'a ' + type(dataloader).__name__}, "
                          "not an iterable of samples", fix) from None
    samples = []
    for sample in batches:
        if len(samples) >= count:
            break
        samples.append(sample)
    if not samples:
        raise ConfigError(LABEL, "dataloader", f"model {model}: the dataloader yielded no sample",
                          "give at least one sample (" + fix.removeprefix("pass ") + ")")
    return samples


def infer_dynamic_axes(samples: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, str]]:
    """Non-batch axes whose size differs between samples. Axes whose sizes agree in every sample
    share a label (a sequence length shared by ``input_ids`` and ``attention_mask``), as exporters
    need one symbol for sizes the graph equates."""
    varying: dict[tuple[str, int], tuple[int, ...]] = {}
    first = samples[0]
    for name, array in first.items():
        for axis in range(1, array.ndim):
            sizes = tuple(int(s[name].shape[axis]) if s[name].ndim > axis else -1 for s in samples)
            if len(set(sizes)) > 1:
                varying[(name, axis)] = sizes
    labels: dict[tuple[int, ...], str] = {}
    axes: dict[str, dict[int, str]] = {}
    for (name, axis), sizes in varying.items():
        axes.setdefault(name, {})[axis] = labels.setdefault(sizes, f"dim{len(labels)}")
    return axes


def largest_batch(samples: Sequence[Mapping[str, Any]]) -> int:
    return max((int(next(iter(s.values())).shape[0]) for s in samples if s and next(iter(s.values())).ndim), default=1)


def object_source(workspace: Workspace, name: str, model: Any, call_samples: Sequence[tuple[tuple, dict]],
                  config: OptimizeConfig, *, method: str | None = None, reference: Any = None) -> ModelSource:
    """A live module called as ``call_samples`` record it. ``reference`` is its output on the first
    sample, if the caller already has it (recorded in a pipeline); else it is computed here."""
    from navbuild import tensors

    first_call = None
    named: list[dict[str, Any]] = []
    for index, (args, kwargs) in enumerate(call_samples):
        try:
            call, leaves = calls.record(args, kwargs, config.input_names)
        except calls.CallError as exc:
            raise ConfigError(LABEL, "dataloader", f"sample {index}: {exc}") from None
        if first_call is None:
            first_call = call
        elif not call.same_structure(first_call):
            raise ConfigError(LABEL, "dataloader", f"sample {index} calls the model with other arguments than "
                              "sample 0 (structure or constants differ)", "give samples of one call signature")
        named.append({n: tensors.to_numpy(leaf) for n, leaf in zip(call.names, leaves)})
    if reference is None:
        reference = _run_once(model, method, *call_samples[0])
    if not calls.flatten_outputs(reference):
        raise ConfigError(LABEL, "model", f"model {name} returned {_what(reference)}, which holds no tensor; "
                          "navbuild deploys models whose outputs are tensors",
                          "return a tensor, or a tuple, list or dict of tensors")
    output_tree = calls.describe(reference, [], (), [])
    exported = exported_model(model, first_call, method, calls.plain(output_tree))
    identity = model_identity(exported)
    entry = objects.write_entry(workspace.root, name, exported, identity)
    count = len(calls.flatten_outputs(reference))
    return ModelSource(
        name=name, framework="torch", entry=entry, samples=workspace.write_samples(name, named),
        sources=[entry.rsplit(":", 1)[0]], inputs=first_call.names,
        outputs=calls.output_names(output_tree, count, config.output_names),
        max_batch_size=config.max_batch_size if config.max_batch_size is not None else largest_batch(named),
        dynamic_axes={k: dict(v) for k, v in (config.dynamic_axes or infer_dynamic_axes(named)).items()},
        config=config, identity=identity,
        live={"call": first_call, "output_tree": output_tree, "output_classes": calls.classes_in(reference),
              "output_dtypes": [leaf.dtype for leaf in calls.flatten_outputs(reference)]})


def entry_source(workspace: Workspace, name: str, entry: str, dataloader: Any, config: OptimizeConfig,
                 framework: str = "torch") -> ModelSource:
    """A model given as ``"file.py:function"`` (relative to the workspace), as navbuild.toml gives it."""
    from navbuild import tensors

    if isinstance(dataloader, str):
        samples, batch = dataloader, None
    else:
        named = [tensors.as_named(sample, tuple(config.input_names or ())) for sample in
                 take(dataloader, config.sample_count, name)]
        samples, batch = workspace.write_samples(name, named), largest_batch(named)
    entry_file = entry.rsplit(":", 1)[0]
    return ModelSource(
        name=name, framework=framework, entry=entry, samples=samples,
        sources=list(config.sources) if config.sources else [entry_file],
        inputs=list(config.input_names or ()), outputs=list(config.output_names or ()),
        max_batch_size=config.max_batch_size if config.max_batch_size is not None else (batch or 1),
        dynamic_axes={k: dict(v) for k, v in (config.dynamic_axes or {}).items()}, config=config)


def exported_model(module: Any, call: calls.Call, method: str | None, outputs_plain: bool) -> Any:
    """What the engine builds from: the module itself when it takes positional tensors and returns
    plain containers of tensors, else the module inside a ``FlatCall``."""
    if call.positional and outputs_plain and method is None:
        return module
    from navbuild.api.flatcall import FlatCall

    return FlatCall(module, call.tree, method)


def _run_once(model: Any, method: str | None, args: tuple, kwargs: dict) -> Any:
    """The model's output on one sample, in eval mode and without gradients (its mode is restored)."""
    import torch

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            function = model if method is None else getattr(model, method)
            return function(*args, **kwargs)
    finally:
        for module, training in modes:
            module.training = training


def _what(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
