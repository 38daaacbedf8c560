"""Build function of ``torch-trt``: Torch-TensorRT compile of the upstream torch-export program.

The upstream ``model.pt2`` (an ExportedProgram at fp32) is loaded; for fp16/bf16 its module is cast
and re-exported with the same dynamic batch, so the precision is explicit in the graph (Torch-
TensorRT's explicit typing; older releases also get ``enabled_precisions``). Inputs are declared
as ``torch_tensorrt.Input`` min/opt/max shapes from the samples (``navbuild_rules.tensorrt.config``). The
result is saved with ``torch_tensorrt.save(..., output_format="exported_program")`` and loaded
back once to check that it reloads.

The Torch-TensorRT API moved between releases (``inputs`` vs ``arg_inputs``, ``enabled_precisions``
deprecated for explicit typing); keyword arguments are chosen from the installed signatures.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import Any

from navbuild.hashing import digest_file
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext, Skip
from navbuild_rules.tensorrt import config
from navbuild_rules.torch import build as torch_build
from navbuild_rules.torch.safe_pt2 import load_program
from navbuild_rules.torch_compile import torch_io
from navbuild_rules.torch_tensorrt.loader import BUILD_INFO, INPUT_FILE, OUTPUT_FILE, import_torch_tensorrt

torch = lazy_import("torch")

PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULTS = {"opt_batch_size": 0, "workspace": 1 << 30}


def validate(params: Any, precision: str, values: Any = None) -> str | None:
    try:
        config.check_params(params, precision, where=f"torch-trt-{precision}", precisions=PRECISIONS,
                            max_batch_size=(values or {}).get("max_batch_size"))
    except config.TensorRTConfigError as exc:
        return str(exc)
    return None


def info_digest(out_dir: Path) -> str:
    """Canonical digest: ``build.json`` (the engine bytes inside the program differ run to run)."""
    return digest_file(Path(out_dir) / BUILD_INFO)


def _accepts(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def build_torch_trt(ctx: BuildContext) -> dict[str, Any]:
    params = config.check_params({**DEFAULTS, **dict(ctx.params)}, ctx.precision, where=ctx.target,
                                 precisions=PRECISIONS, max_batch_size=ctx.max_batch_size)
    profile = config.profile_shapes(ctx.samples, ctx.model.batch_dim, params.max_batch_size,
                                    params.opt_batch_size, where=ctx.target,
                                    axes=config.axis_ranges(ctx.model, ctx.samples))
    torch_tensorrt = import_torch_tensorrt()

    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU on this machine")
    dtype = torch_io.torch_dtype(params.precision)
    source = ctx.input_path(INPUT_FILE)
    program = load_program(source)  # the upstream archive may come from a package: nothing unpickled
    order = torch_io.input_order(ctx.model, ctx.samples[0])
    sample = torch_io.export_sample(ctx.model, ctx.samples, params.max_batch_size)
    example = torch_io.to_tensors(ctx.model, sample, "cuda", params.precision)
    # the batch Dim and the dynamic axes' bounded Dims, as the upstream export has them
    dynamic = torch_build.dynamic_shapes(ctx)
    if params.precision != "fp32":  # cast the weights and re-export, keeping the dynamic axes
        module = program.module().to(device="cuda", dtype=dtype)
        program = torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
    inputs = [torch_tensorrt.Input(min_shape=profile[name].min, opt_shape=profile[name].opt,
                                   max_shape=profile[name].max,
                                   dtype=dtype if sample[name].dtype.kind == "f" else
                                   torch.from_numpy(sample[name][:0]).dtype)
              for name in order]
    fields = {f.name for f in dataclasses.fields(torch_tensorrt.dynamo.CompilationSettings)}
    settings: dict[str, Any] = {"workspace_size": params.workspace, "min_block_size": 1}
    if "use_explicit_typing" in fields:
        settings["use_explicit_typing"] = True
    else:
        settings["enabled_precisions"] = {dtype}
    if "disable_tf32" in fields:  # TensorRT allows TF32 in fp32 layers by default: fp32 means fp32
        settings["disable_tf32"] = True
    if "timing_cache_path" in fields and ctx.cache_dir is not None:
        settings["timing_cache_path"] = str(ctx.cache_dir / "timing.cache")
    compile_inputs = "arg_inputs" if _accepts(torch_tensorrt.dynamo.compile, "arg_inputs") else "inputs"
    started = time.perf_counter()
    compiled = torch_tensorrt.dynamo.compile(program, **{compile_inputs: inputs}, **settings)
    seconds = time.perf_counter() - started
    out = ctx.out_dir / OUTPUT_FILE
    save_kwargs: dict[str, Any] = {
        "arg_inputs" if _accepts(torch_tensorrt.save, "arg_inputs") else "inputs": list(example)}
    if dynamic is not None and _accepts(torch_tensorrt.save, "dynamic_shapes"):
        save_kwargs["dynamic_shapes"] = dynamic  # keeps the batch and the axes dynamic in the saved program
    torch_tensorrt.save(compiled, str(out), output_format="exported_program", **save_kwargs)
    reloaded = torch.export.load(str(out)).module()  # must reload, and run
    with torch.no_grad():
        reloaded(*example)
    ctx.log(f"torch-trt: compiled in {seconds:.1f} s with {sorted(settings)}; saved and reloaded {out.name}")
    profile_json = {n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for n, r in profile.items()}
    (ctx.out_dir / BUILD_INFO).write_text(json.dumps(
        {"format": "navbuild-torch-trt/1", "source_digest": digest_file(source), "precision": params.precision,
         "tf32": not settings.get("disable_tf32", False), "precision_method": "cast", "workspace": params.workspace,
         "profile": profile_json},
        indent=2, sort_keys=True) + "\n")
    return {"torch_tensorrt_version": getattr(torch_tensorrt, "__version__", None), "precision_method": "cast",
            "settings": sorted(settings), "profile": profile_json, "compile_seconds": round(seconds, 3)}
