"""The `samples` rule: the model's sample inputs, written once in a deterministic file.

``samples`` in navbuild.toml is either ``file.py:function`` (returns an iterable of samples: a
tensor, a tuple/list of tensors, or a dict name -> tensor) or a ``.tensors``/``.npz`` file.
The samples are checked here, once, so every later step can trust them.

Dynamic axes (``navbuild.dynamic_axes``): sizes must agree between inputs that share a label and stay
within declared bounds. A declared bound that no sample reaches gets a sample of its own, the first
sample cut or grown to it, so the reference and every check cover the range's ends; a label whose
samples all have one size is logged (the check then covers that size only).
"""
from __future__ import annotations

from typing import Any

from navbuild import dynamic_axes
from navbuild.lazy import lazy_import
from navbuild.rule import NO_BATCH, ROLE_SAMPLES, BuildContext, Rule, call_entry

np = lazy_import("numpy")

OUTPUT = "samples.tensors"


def _load(ctx: BuildContext) -> list[dict[str, Any]]:
    from navbuild import tensors

    source = ctx.params["samples"]
    root = ctx.model.root
    if source.endswith(".tensors"):
        return tensors.load(root / source)
    if source.endswith(".npz"):
        with np.load(root / source) as data:
            return [{name: data[name] for name in data.files}]
    produced = call_entry(root, source)
    if produced is None:
        raise ValueError(f"{source} returned None; it must return an iterable of samples")
    return [tensors.as_named(sample, ctx.model.inputs) for sample in produced]


def check_samples(model_name: str, samples: list[dict[str, Any]], inputs: tuple[str, ...],
                  max_batch_size: int, axes: dynamic_axes.Axes) -> None:
    """Samples that contradict each other or the declared model are refused with the reason.

    With a batch dimension (max_batch_size >= 1) dimension 0 is the batch: the same for every input
    of a sample, at most max_batch_size, free to vary between samples. Without one (max_batch_size
    0) every dimension is fixed except the declared dynamic axes, and scalars are inputs too."""
    if not samples:
        raise ValueError(f"model {model_name}: the samples are empty")
    names = list(samples[0])
    if inputs and sorted(names) != sorted(inputs):
        raise ValueError(f"model {model_name}: samples have inputs {names} but navbuild.toml declares {list(inputs)}")
    batched = max_batch_size != NO_BATCH
    for index, sample in enumerate(samples):
        if list(sample) != names:
            raise ValueError(f"model {model_name}: sample {index} has inputs {list(sample)}, sample 0 has {names}")
        for name, array in sample.items():
            reference = samples[0][name]
            if array.dtype != reference.dtype:
                raise ValueError(f"model {model_name}: input {name} is {array.dtype} in sample {index} "
                                 f"but {reference.dtype} in sample 0")
            dynamic = set(axes.get(name, {})) | ({0} if batched else set())
            if array.ndim != reference.ndim or any(
                    a != b for axis, (a, b) in enumerate(zip(array.shape, reference.shape)) if axis not in dynamic):
                raise ValueError(f"model {model_name}: input {name} has shape {list(array.shape)} in sample "
                                 f"{index} but {list(reference.shape)} in sample 0; declare the axis in "
                                 f"dynamic_axes if it varies" + ("" if batched else " (max_batch_size = 0: "
                                                                 "no dimension is a batch)"))
        if batched:
            _check_batch(model_name, index, sample, max_batch_size)


def _check_batch(model_name: str, index: int, sample: dict[str, Any], max_batch_size: int) -> None:
    batch = None
    for name, array in sample.items():
        if array.ndim == 0:
            raise ValueError(f"model {model_name}: input {name} of sample {index} has no batch dimension; "
                             f"set max_batch_size = 0 for a model without one")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise ValueError(f"model {model_name}: sample {index} has batch {batch} for one input and "
                             f"{array.shape[0]} for {name}; set max_batch_size = 0 if dimension 0 is no batch")
    if batch > max_batch_size:
        raise ValueError(f"model {model_name}: sample {index} has batch {batch}, over max_batch_size "
                         f"{max_batch_size}")


def check_axes(model_name: str, samples: list[dict[str, Any]], axes: dynamic_axes.Axes,
               bounds: dynamic_axes.Bounds, outputs: tuple[str, ...]) -> None:
    """Dynamic axes name inputs the samples hold (or declared outputs), and the samples respect them."""
    for name in axes:
        if name not in samples[0] and name not in outputs:
            raise ValueError(f"model {model_name}: dynamic_axes names {name!r}, which is not an input of the "
                             f"samples ({', '.join(samples[0])})")
    problem = dynamic_axes.sample_problem(axes, bounds, samples)
    if problem:
        raise ValueError(f"model {model_name}: {problem}")


def with_bounds_covered(ctx: BuildContext, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples, plus the first one cut or grown to each declared bound that no sample reaches."""
    spec = ctx.model
    seen = dynamic_axes.sizes(spec.dynamic_axes, samples)
    added = []
    for label, span in dynamic_axes.spec_ranges(spec, samples).items():
        if len(seen[label]) == 1 and not spec.axis_bounds.get(label):
            ctx.log(f"samples: every sample has {label} = {seen[label][0]}; the checks cover that size only. "
                    f"Give samples of two sizes, or declare min/max for {label} (dynamic_axes)")
        for length in dynamic_axes.boundary_lengths(span, seen[label], spec.axis_bounds.get(label) or {}):
            added.append(dynamic_axes.resized(samples[0], spec.dynamic_axes, label, length))
            ctx.log(f"samples: added sample {len(samples) + len(added) - 1}: sample 0 with {label} = {length} "
                    f"(a declared bound no sample reached)")
    return samples + added


def build(ctx: BuildContext) -> dict[str, Any]:
    from navbuild import tensors

    samples = _load(ctx)
    spec = ctx.model
    check_samples(spec.name, samples, spec.inputs, ctx.max_batch_size, dict(spec.dynamic_axes))
    check_axes(spec.name, samples, spec.dynamic_axes, spec.axis_bounds, spec.outputs)
    given = len(samples)
    samples = with_bounds_covered(ctx, samples)
    tensors.save(ctx.out_dir / OUTPUT, samples)
    first = samples[0]
    return {"count": len(samples), "given": given,
            "inputs": [{"name": n, "dtype": str(a.dtype), "shape": spec.declared_shape(a.shape, n)}
                       for n, a in first.items()],
            "batch_sizes": [int(next(iter(s.values())).shape[0]) for s in samples] if spec.batched else [],
            "axis_sizes": dynamic_axes.sizes(spec.dynamic_axes, samples)}


RULES = [Rule(name="samples", version="1", build=build, params={"samples": None}, uses=("max_batch_size",),
              role=ROLE_SAMPLES,
              outputs=(OUTPUT,), description="sample inputs, checked and stored deterministically")]
RUNNERS: list = []
