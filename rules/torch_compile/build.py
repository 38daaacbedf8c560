"""Build functions of the torch-compile (a recipe plus torch's compile cache) and aoti rules."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from navbuild.hashing import digest_file
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from rules.torch_compile import options, torch_io
from rules.torch_compile.loader import AOTI_FILE, AOTI_INFO_FILE, AOTI_INFO_FORMAT, CACHE_FILE, RECIPE_FILE

torch = lazy_import("torch")


# -- torch-compile --------------------------------------------------------------------------------
def build_torch_compile(ctx: BuildContext) -> dict[str, Any]:
    """Write ``recipe.json`` (the compile options) and ``compile_cache.bin`` (torch's compile cache).

    The recipe is the artifact: the runner compiles the eager model with it. To spare the runner
    the compile work, the build compiles here on ``ctx.device``, runs every sample once, and keeps
    what ``torch.compiler.save_cache_artifacts()`` returns; the runner hot-loads those bytes before
    compiling. The cache is only valid on this device and torch version (the rule is device-bound).
    """
    opts = options.compile_options(ctx.params, ctx.target)
    precision = options.check_precision(ctx.precision, ctx.target)
    from torch.compiler._cache import CacheArtifactManager

    _check_backend_exists(opts["backend"], ctx.target)
    model = torch_io.prepare_model(ctx.model.load_entry(), ctx.device, precision)
    model = torch_io.runnable(model, ctx.model, torch_io.input_order(ctx.model, ctx.samples[0]))  # inputs by name
    feeds = [torch_io.to_tensors(ctx.model, sample, ctx.device, precision) for sample in ctx.samples]
    # A fresh artifact list: only this model's compile goes into its cache, whatever ran before in
    # this process (compile caches that hit are recorded too, so a warm machine still fills it).
    with CacheArtifactManager.with_fresh_cache():
        compiled = torch.compile(model, mode=opts["mode"], backend=opts["backend"],
                                 dynamic=options.DYNAMIC[opts["dynamic"]])
        started = time.perf_counter()
        with torch.inference_mode():
            for args in feeds:
                compiled(*args)
        if ctx.device == "cuda":
            torch.cuda.synchronize()
        compile_seconds = time.perf_counter() - started
        saved = torch.compiler.save_cache_artifacts()
    artifacts: dict[str, int] = {}
    if saved is not None:
        data, info = saved
        (ctx.out_dir / CACHE_FILE).write_bytes(data)
        artifacts = {kind: len(keys) for kind, keys in info.artifacts.items()}
    ctx.log(f"torch-compile: compiled and ran {len(feeds)} samples in {compile_seconds:.1f} s; "
            f"cache {'not produced' if saved is None else f'{len(saved[0])} bytes {artifacts}'}")
    recipe = {"format": options.RECIPE_FORMAT, **opts, "precision": precision,
              "precision_method": options.PRECISION_METHOD, "device": ctx.device,
              "cache": CACHE_FILE if saved is not None else None,
              "warmup": options.input_specs(ctx.samples)}
    (ctx.out_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return {"precision_method": options.PRECISION_METHOD, **opts, "compile_seconds": round(compile_seconds, 3),
            "cache_bytes": len(saved[0]) if saved else 0, "cache_artifacts": artifacts}


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
    """Export the eager model at ``ctx.precision`` with a dynamic batch (1..max_batch_size) and
    compile it with AOTInductor into ``model.pt2``; then load and run it once in a child process.

    The export is made here from the source model rather than taken from the torch-export target,
    because a reduced precision is applied by casting the model before export.
    """
    max_batch = options.check_max_batch_size(ctx.params.get("max_batch_size", ctx.model.max_batch_size),
                                             ctx.target)
    precision = options.check_precision(ctx.precision, ctx.target)
    from torch._inductor import aoti_compile_and_package

    model = torch_io.prepare_model(ctx.model.load_entry(), ctx.device, precision)
    sample = torch_io.export_sample(ctx.model, ctx.samples, max_batch)
    args = torch_io.to_tensors(ctx.model, sample, ctx.device, precision)
    # plain tensors in and out: the worker that loads the package knows no ModelOutput class
    model, _ = torch_io.exportable(model, ctx.model, torch_io.input_order(ctx.model, sample), args)
    dynamic_shapes = batch_dynamic_shapes(len(args), ctx.model.batch_dim, max_batch)
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(model, args, dynamic_shapes=dynamic_shapes, strict=False)
    export_seconds = time.perf_counter() - started
    package = ctx.out_dir / AOTI_FILE
    started = time.perf_counter()
    with torch.no_grad():
        aoti_compile_and_package(program, package_path=str(package))
    compile_seconds = time.perf_counter() - started
    ctx.log(f"aoti: exported in {export_seconds:.1f} s, compiled and packaged in {compile_seconds:.1f} s")
    info = {"format": AOTI_INFO_FORMAT, "export_digest": export_digest(program), "precision": precision,
            "precision_method": options.PRECISION_METHOD, "max_batch_size": max_batch,
            "dynamic_batch": dynamic_shapes is not None, "device": ctx.device,
            "inputs": torch_io.input_order(ctx.model, sample)}
    (ctx.out_dir / AOTI_INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    check = validate_package(package, ctx.device, precision, ctx.model, sample)
    ctx.log(f"aoti: package loaded in a child process in {check['load_seconds']:.2f} s and ran a batch of "
            f"{torch_io.batch_of(sample, ctx.model.batch_dim)}")
    return {"precision_method": options.PRECISION_METHOD, "max_batch_size": max_batch,
            "dynamic_batch": dynamic_shapes is not None, "export_seconds": round(export_seconds, 3),
            "compile_seconds": round(compile_seconds, 3), "validated_in_child": True,
            "child_load_seconds": round(check["load_seconds"], 3), "output_shapes": check["output_shapes"]}


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


def batch_dynamic_shapes(count: int, batch_dim: int, max_batch: int) -> tuple[dict[int, Any], ...] | None:
    """torch.export ``dynamic_shapes``: one shared batch Dim (1..max_batch) on every input."""
    if max_batch < 2:
        return None
    from torch.export import Dim

    batch = Dim("batch", min=1, max=max_batch)
    return tuple({batch_dim: batch} for _ in range(count))


def validate_package(package: Path, device: str, precision: str, model: Any,
                     sample: Mapping[str, Any]) -> dict[str, Any]:
    """Load ``package`` in a fresh worker process and run ``sample``; a crash raises AotiChildError."""
    from navbuild.tensors import dumps, loads
    from rules.torch_compile.aoti_child import LOAD_TIMEOUT_S, AotiChild

    feed = {name: sample[name] for name in torch_io.input_order(model, sample)}
    with AotiChild(label="aoti worker (validating the new package)") as child:
        loaded = child.request({"op": "load", "path": str(package), "device": device, "precision": precision},
                               timeout=LOAD_TIMEOUT_S, what=f"load of {package.name}")
        reply = child.request({"op": "infer", "feed": dumps([feed])}, what="a first inference")
    outputs = loads(reply["outputs"])[0]
    return {"load_seconds": loaded["seconds"], "output_shapes": [list(a.shape) for a in outputs.values()]}
