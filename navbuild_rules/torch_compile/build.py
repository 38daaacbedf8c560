"""Build functions of the torch-compile (a recipe plus torch's compile cache) and aoti rules."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from navbuild import dynamic_axes
from navbuild.hashing import digest_file
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from navbuild_rules.torch import build as torch_build
from navbuild_rules.torch import memory_format, tf32
from navbuild_rules.torch_compile import batching, compile_cache, options, torch_io
from navbuild_rules.torch_compile.compile_cache import compile_model
from navbuild_rules.torch_compile.loader import (AOTI_FILE, AOTI_INFO_FILE, AOTI_INFO_FORMAT, CACHE_FILE, RECIPE_FILE,
                                        RECIPE_FORMAT, bucket_file, load_request)

torch = lazy_import("torch")


# -- torch-compile --------------------------------------------------------------------------------
def build_torch_compile(ctx: BuildContext) -> dict[str, Any]:
    """Write ``recipe.json`` (the compile options and batch buckets) and ``compile_cache.bin``.

    The recipe is the artifact: the runner compiles the eager model with it. The build compiles here
    on ``ctx.device``, once per bucket (each bucket's batch made of the samples' rows), with
    inductor's caches in ``ctx.cache_dir``, so the check and the profile, whose runner gets the same
    folder, load what was compiled instead of compiling again. It also keeps what
    ``torch.compiler.save_cache_artifacts()`` returns, for a machine that gets the artifact without
    the cache folder (a shared store, a package); the runner hot-loads those bytes. Both are only
    valid on this device and torch version (the rule is device-bound).
    """
    opts = options.compile_options(ctx.params, ctx.target)
    plan = options.batch_plan(ctx.params, ctx.max_batch_size, ctx.target)
    precision = options.check_precision(ctx.precision, ctx.target)
    from torch.compiler._cache import CacheArtifactManager

    _check_backend_exists(opts["backend"], ctx.target)
    cudnn_benchmark = memory_format.use_cudnn_benchmark(ctx.device)
    channels_last = opts[memory_format.OPTION]
    model = memory_format.model(torch_io.prepare_model(ctx.model.load_entry(), ctx.device, precision), channels_last)
    tf32_on = tf32.apply(precision, ctx.device)  # inductor reads it when it compiles
    names = torch_io.input_order(ctx.model, ctx.samples[0])
    model = torch_io.runnable(model, ctx.model, names)  # inputs by name
    axes = options.axes_plan(ctx.model, ctx.samples)
    # buckets: one warm-up per shape the compiled code tells apart; a dynamic batch: every sample (with
    # dynamic = "auto", torch makes a size dynamic once it has seen two)
    shapes = options.distinct_shapes(ctx.samples, axes, ctx.model.batch_dim) if plan.get("buckets") else ctx.samples
    feeds = [memory_format.inputs(torch_io.to_tensors(ctx.model, sample, ctx.device, precision), channels_last)
             for sample in warmup_samples(shapes, plan.get("buckets"), ctx.model.batch_dim)]
    counter = compile_cache.CompileCounter()
    # A fresh artifact list: only this model's compile goes into its cache, whatever ran before in
    # this process (compile caches that hit are recorded too, so a warm machine still fills it).
    cache_folder = compile_cache.folder(ctx.cache_dir, axes)
    with compile_cache.using(cache_folder), CacheArtifactManager.with_fresh_cache():
        compiled = compile_model(model, opts, len(feeds))
        started = time.perf_counter()
        # no_grad as the runner calls it: another grad mode is another guard, and a recompile
        with torch.no_grad(), compile_cache.loud_recompile_limit():
            for number, args in enumerate(feeds, 1):
                ctx.progress("compiling", f"warm-up batch {number} of {len(feeds)}" if len(feeds) > 1 else "")
                compiled(*torch_io.mark_dynamic(args, names, axes))
        if ctx.device == "cuda":
            torch.cuda.synchronize()
        compile_seconds = time.perf_counter() - started
        saved = torch.compiler.save_cache_artifacts()
    compiles = counter.delta()
    artifacts: dict[str, int] = {}
    if saved is not None:
        data, info = saved
        (ctx.out_dir / CACHE_FILE).write_bytes(data)
        artifacts = {kind: len(keys) for kind, keys in info.artifacts.items()}
    ctx.log(f"torch-compile: ran {len(feeds)} warm-up batches ({_describe_plan(plan)}"
            f"{''.join(f', {label} {how}' for label, how in _describe_axes(axes).items())}) in {compile_seconds:.1f} s: "
            f"{compiles['graphs_compiled']} graphs compiled, {compiles['graphs_loaded']} loaded from "
            f"{cache_folder}; cache {'not produced' if saved is None else f'{len(saved[0])} bytes {artifacts}'}")
    recipe = {"format": RECIPE_FORMAT, **{k: v for k, v in opts.items() if k != memory_format.OPTION},
              "memory_format": memory_format.name(channels_last), "batching": plan, "precision": precision,
              "precision_method": options.PRECISION_METHOD, "device": ctx.device, "cudnn_benchmark": cudnn_benchmark,
              "tf32": tf32_on, "cache": CACHE_FILE if saved is not None else None,
              "warmup": options.input_specs(shapes, ctx.model.batch_dim, plan.get("buckets")),
              **({"dynamic_axes": axes} if axes else {})}  # absent without any: the recipe of before
    (ctx.out_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return {"precision_method": options.PRECISION_METHOD, **opts, "memory_format": recipe["memory_format"],
            "batching": plan["mode"], "buckets": plan.get("buckets"), "cudnn_benchmark": cudnn_benchmark,
            "tf32": tf32_on, **({"axes": _describe_axes(axes)} if axes else {}),
            "compile_seconds": round(compile_seconds, 3), **compiles,
            "cache_bytes": len(saved[0]) if saved else 0, "cache_artifacts": artifacts}


def _describe_axes(axes: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """How each dynamic axis is served, for the record: ``{"seq": "dynamic 2..32"}`` (a size of 1 is
    a graph of its own)."""
    return {bound["label"]: f"dynamic {bound['min']}..{bound['max']}"
            for by_axis in axes.values() for bound in by_axis.values()}


def warmup_samples(samples: list[Mapping[str, Any]], buckets: list[int] | None, batch_dim: int) -> list[dict[str, Any]]:
    """The samples as they are (dynamic batch), or each distinct sample shape at every bucket's batch
    size, made of that sample's own rows."""
    import numpy as np

    if buckets is None:
        return [dict(sample) for sample in samples]
    distinct: dict[tuple, Mapping[str, Any]] = {}
    for sample in samples:
        shape = tuple((name, tuple(np.delete(np.array(array.shape), batch_dim))) for name, array in sample.items())
        distinct.setdefault(shape, sample)
    feeds = []
    for bucket in buckets:
        for sample in distinct.values():
            rows = np.arange(bucket) % batching.batch_of(sample, batch_dim)
            feeds.append({name: np.take(array, rows, axis=batch_dim) for name, array in sample.items()})
    return feeds


def _describe_plan(plan: Mapping[str, Any]) -> str:
    if plan["mode"] == "buckets":
        return f"buckets {', '.join(map(str, plan['buckets']))}"
    return f"dynamic batch up to {plan['max_batch_size']}"


def _check_backend_exists(backend: str, where: str) -> None:
    known = torch.compiler.list_backends(exclude_tags=())
    if backend not in known:
        raise options.CompileConfigError(f"{where}: backend {backend!r} is not a torch.compile backend here; "
                                          f"known: {', '.join(sorted(known))}")


def recipe_digest(out_dir: Path) -> str:
    """torch-compile's canonical digest: the recipe (the cache bytes differ run to run); it names no
    model, so the engine mixes the model's sources in (``Rule.identifies_model``)."""
    return digest_file(Path(out_dir) / RECIPE_FILE)


# -- aoti -----------------------------------------------------------------------------------------
def build_aoti(ctx: BuildContext) -> dict[str, Any]:
    """Export the eager model at ``ctx.precision`` and compile it with AOTInductor: one package per
    batch bucket (``model-b<N>.pt2``, static shapes), or with ``dynamic = true`` one ``model.pt2``
    with a dynamic batch of 1..max_batch_size; then load and run every package once in a child process.

    The export is made here from the source model rather than taken from the torch-export target,
    because a reduced precision is applied by casting the model before export.
    """
    plan = options.batch_plan(ctx.params, ctx.max_batch_size, ctx.target)
    max_batch = options.check_max_batch_size(ctx.max_batch_size, ctx.target)
    precision = options.check_precision(ctx.precision, ctx.target)
    channels_last = options.check_channels_last(ctx.params.get(memory_format.OPTION, False), ctx.target)
    model = memory_format.model(torch_io.prepare_model(ctx.model.load_entry(), ctx.device, precision), channels_last)
    tf32_on = tf32.apply(precision, ctx.device)  # AOTInductor bakes it into the kernels it generates
    spans = dynamic_axes.spec_ranges(ctx.model, ctx.samples)
    if plan["mode"] == "dynamic":
        shapes = {AOTI_FILE: torch_io.export_sample(ctx.model, ctx.samples, max_batch)}
    else:
        bucket_samples = warmup_samples([_exportable_sample(ctx)], plan["buckets"], ctx.model.batch_dim)
        shapes = {bucket_file(bucket): sample for bucket, sample in zip(plan["buckets"], bucket_samples)}
    sample = next(iter(shapes.values()))
    # plain tensors in and out: the worker that loads the packages knows no ModelOutput class
    model, _ = torch_io.exportable(model, ctx.model, torch_io.input_order(ctx.model, sample),
                                   memory_format.inputs(torch_io.to_tensors(ctx.model, sample, ctx.device, precision),
                                                        channels_last))
    export_seconds = compile_seconds = 0.0
    digests = {}
    bounds = {label: span.to_dict() for label, span in spans.items()}
    with compile_cache.using(compile_cache.folder(ctx.cache_dir, bounds)):
        for number, (file_name, shape_sample) in enumerate(shapes.items(), 1):
            of = f"{file_name}, {number} of {len(shapes)}" if len(shapes) > 1 else ""
            ctx.progress("exporting", of)
            args = memory_format.inputs(torch_io.to_tensors(ctx.model, shape_sample, ctx.device, precision),
                                        channels_last)
            # a dynamic batch (dynamic = true) or one per bucket; the dynamic axes bounded Dims either way
            dynamic_shapes = torch_build.dynamic_shapes(ctx, batch=plan["mode"] == "dynamic")
            started = time.perf_counter()
            with torch.no_grad():
                program = torch.export.export(model, args, dynamic_shapes=dynamic_shapes, strict=False)
            export_seconds += time.perf_counter() - started
            started = time.perf_counter()
            ctx.progress("compiling", of)
            with torch.no_grad():
                aoti_compile_and_package(program, package_path=str(ctx.out_dir / file_name))
            compile_seconds += time.perf_counter() - started
            digests[file_name] = export_digest(program)
    ctx.log(f"aoti: {len(shapes)} packages ({_describe_plan(plan)}) exported in {export_seconds:.1f} s, "
            f"compiled and packaged in {compile_seconds:.1f} s")
    info = {"format": AOTI_INFO_FORMAT, "export_digests": digests, "precision": precision,
            "precision_method": options.PRECISION_METHOD, "max_batch_size": max_batch, "batching": plan,
            "packages": sorted(shapes), "memory_format": memory_format.name(channels_last), "device": ctx.device,
            "tf32": tf32_on, "inputs": torch_io.input_order(ctx.model, sample),
            **({"dynamic_axes": bounds} if bounds else {})}
    (ctx.out_dir / AOTI_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    check = validate_package(ctx.out_dir, info, ctx.model, [*shapes.values(), *_at_other_sizes(ctx, shapes.values())])
    ctx.log(f"aoti: packages loaded in a child process in {check['load_seconds']:.2f} s and ran batches of "
            f"{', '.join(str(torch_io.batch_of(s, ctx.model.batch_dim)) for s in shapes.values())}")
    return {"precision_method": options.PRECISION_METHOD, "max_batch_size": max_batch,
            "batching": plan["mode"], "buckets": plan.get("buckets"), "dynamic_batch": plan["mode"] == "dynamic",
            **({"axes": {label: f"dynamic {span.min}..{span.max}" for label, span in spans.items()}} if spans else {}),
            "memory_format": info["memory_format"], "cudnn_benchmark": ctx.device == "cuda", "tf32": tf32_on,
            "export_seconds": round(export_seconds, 3), "compile_seconds": round(compile_seconds, 3),
            "validated_in_child": True, "child_load_seconds": round(check["load_seconds"], 3),
            "output_shapes": check["output_shapes"]}


def _exportable_sample(ctx: BuildContext) -> Mapping[str, Any]:
    """The first sample whose dynamic axes are all 2 or more: torch.export specializes a size of 1."""
    for sample in ctx.samples:
        sizes = dynamic_axes.sizes(ctx.model.dynamic_axes, [sample])
        if all(size > 1 for values in sizes.values() for size in values):
            return sample
    return ctx.samples[0]


def _at_other_sizes(ctx: BuildContext, samples: Any) -> list[dict[str, Any]]:
    """Each sample again with its dynamic axes at another size: the packages must serve the range."""
    seen = dynamic_axes.sizes(ctx.model.dynamic_axes, ctx.samples)
    others = []
    for sample in samples:
        here = dynamic_axes.sizes(ctx.model.dynamic_axes, [sample])
        changed = dict(sample)
        for label, span in dynamic_axes.spec_ranges(ctx.model, ctx.samples).items():
            size = dynamic_axes.other_size(span, here[label][0], seen[label]) if here[label] else None
            if size is not None:
                changed = dynamic_axes.resized(changed, ctx.model.dynamic_axes, label, size)
        if changed is not sample and any(changed[n].shape != sample[n].shape for n in sample):
            others.append(changed)
    return others


def aoti_compile_and_package(program: Any, package_path: str) -> Any:
    from torch._inductor import aoti_compile_and_package as compile_and_package

    return compile_and_package(program, package_path=package_path)


def export_digest(program: Any) -> str:
    """The exported graph and its weights, digested: what the package computes, without the paths
    and temporary names that AOTInductor writes into its C++ sources and shared object."""
    from navbuild.hashing import digest_bytes, digest_value

    tensors = {**program.state_dict, **program.constants}
    weights = []
    for name in sorted(tensors):
        tensor = tensors[name]
        if isinstance(tensor, torch.Tensor):
            raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            weights.append([name, str(tensor.dtype), list(tensor.shape), digest_bytes(raw)])
        else:
            weights.append([name, type(tensor).__name__])
    return digest_value({"graph": str(program.graph), "weights": weights})


def aoti_digest(out_dir: Path) -> str:
    """aoti's canonical digest: ``aoti.json`` (export digest and options), not the compiled bytes."""
    return digest_file(Path(out_dir) / AOTI_INFO_FILE)


def validate_package(out_dir: Path, info: Mapping[str, Any], model: Any,
                     samples: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Load the packages in a fresh worker process and run each once; a crash raises AotiChildError."""
    from navbuild.tensors import dumps, loads
    from navbuild_rules.torch_compile.aoti_child import LOAD_TIMEOUT_S, AotiChild

    with AotiChild(label="aoti worker (validating the new package)") as child:
        loaded = child.request(load_request(out_dir, info), timeout=LOAD_TIMEOUT_S,
                               what=f"load of {', '.join(info['packages'])}")
        shapes = []
        for sample in samples:
            feed = {name: sample[name] for name in torch_io.input_order(model, sample)}
            reply = child.request({"op": "infer", "feed": dumps([feed])}, what="a first inference")
            shapes.extend(list(a.shape) for a in loads(reply["outputs"])[0].values())
    return {"load_seconds": loaded["seconds"], "output_shapes": shapes}
