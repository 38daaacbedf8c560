"""Build functions: ``trt`` (ONNX -> TensorRT plan with the TensorRT 10 Python API), ``ort-trt`` and
``ort-cuda`` (the ONNX model for ONNX Runtime's TensorRT and CUDA execution providers).

Each build first checks its configuration (``config``: pure Python, raises TensorRTConfigError),
then imports its framework, raising ``Skip`` with the reason when the machine lacks it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from navbuild.hashing import digest_bytes, digest_file, digest_value
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext, Skip, tf32_enabled
from navbuild_rules.onnx.loader import cuda_provider_options
from navbuild_rules.tensorrt import config
from navbuild_rules.tensorrt.loader import (BUILD_INFO, ONNX_FILE, ORT_CUDA, ORT_ENGINE_DIR, ORT_TRT, PLAN_FILE, TIMING_CACHE,
                                   import_tensorrt, ort_session, ort_trt_options)

torch = lazy_import("torch")


def require_cuda(where: str) -> None:
    try:
        import torch
    except ImportError:
        raise Skip(f"{where} needs torch (CUDA buffers), which is not installed") from None
    if not torch.cuda.is_available():
        raise Skip("no CUDA GPU on this machine")


def info_digest(out_dir: Path) -> str:
    """Canonical digest of trt and ort-trt: ``build.json`` (TensorRT's engine bytes differ run to run)."""
    return digest_file(Path(out_dir) / BUILD_INFO)


def _write_info(out_dir: Path, info: Mapping[str, Any]) -> None:
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _atomic_write(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _profile_json(profile: Mapping[str, config.ShapeRange]) -> dict[str, dict[str, list[int]]]:
    return {name: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for name, r in profile.items()}


# -- trt ------------------------------------------------------------------------------------------
def build_trt(ctx: BuildContext) -> dict[str, Any]:
    """ONNX -> ``model.plan``: builder, network from the ONNX parser, memory pool limit, precision
    flag, one optimization profile from the samples, int8 calibration, persistent timing cache."""
    params = config.check_params(ctx.params, ctx.precision, where=ctx.target, max_batch_size=ctx.max_batch_size)
    profile = config.profile_shapes(ctx.samples, ctx.model.batch_dim, params.max_batch_size,
                                    params.opt_batch_size, where=ctx.target,
                                    axes=config.axis_ranges(ctx.model, ctx.samples))
    calibration = None
    if params.precision == "int8":
        calibration = config.load_calibration(params.calibration, ctx.samples, ctx.model.root,
                                              ctx.model.inputs, where=ctx.target)
    trt = import_tensorrt()
    require_cuda(ctx.target)
    onnx_path = ctx.input_path(ONNX_FILE)
    onnx_digest = digest_file(onnx_path)
    logger = _logger(trt, ctx.log)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{ctx.target}: TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, params.workspace)
    flag = {"fp16": "FP16", "bf16": "BF16", "int8": "INT8", "tf32": "TF32"}.get(params.precision)
    if flag:
        builder_config.set_flag(getattr(trt.BuilderFlag, flag))
    tf32 = tf32_enabled(params.precision)
    if not tf32:  # TensorRT allows TF32 by default: off, so that fp32 layers compute in fp32
        builder_config.clear_flag(trt.BuilderFlag.TF32)

    network_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    missing = [name for name in network_inputs if name not in profile]
    if missing:
        raise RuntimeError(f"{ctx.target}: the ONNX model has inputs {missing} that the samples do not have "
                           f"(samples: {sorted(profile)})")
    optimization_profile = builder.create_optimization_profile()
    for name in network_inputs:
        shapes = profile[name]
        optimization_profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    builder_config.add_optimization_profile(optimization_profile)

    calibration_info: dict[str, Any] = {}
    if calibration is not None:
        batches = config.calibration_batches(calibration, ctx.model.batch_dim, params.opt_batch_size)
        calibration_info = {"source": params.calibration, "batches": len(batches),
                            "batch_shapes": {n: list(a.shape) for n, a in batches[0].items()},
                            "data_digest": digest_value([[n, a.dtype.str, list(a.shape), digest_bytes(a.tobytes())]
                                                         for batch in batches for n, a in batch.items()])}
        cache_file = None
        if ctx.cache_dir is not None:
            cache_file = ctx.cache_dir / f"calibration-{digest_value([onnx_digest, calibration_info])[:16]}.cache"
        builder_config.int8_calibrator = _calibrator(trt, batches, network_inputs, cache_file)
        calibration_profile = builder.create_optimization_profile()
        for name in network_inputs:  # TensorRT calibrates at one shape: the batches'
            shape = tuple(batches[0][name].shape)
            calibration_profile.set_shape(name, shape, shape, shape)
        builder_config.set_calibration_profile(calibration_profile)

    timing_path = ctx.cache_dir / TIMING_CACHE if ctx.cache_dir is not None else None
    timing_bytes = timing_path.read_bytes() if timing_path is not None and timing_path.exists() else b""
    timing_cache = builder_config.create_timing_cache(timing_bytes)
    builder_config.set_timing_cache(timing_cache, ignore_mismatch=False)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, builder_config)
    seconds = time.perf_counter() - started
    if plan is None:
        raise RuntimeError(f"{ctx.target}: TensorRT could not build an engine; {logger.last_error or 'see build.log'}")
    _atomic_write(ctx.out_dir / PLAN_FILE, plan)
    if timing_path is not None:
        _atomic_write(timing_path, timing_cache.serialize())
    ctx.log(f"trt: built {PLAN_FILE} in {seconds:.1f} s (timing cache: "
            f"{f'{len(timing_bytes)} bytes loaded' if timing_bytes else 'new'})")
    info = {"format": "navbuild-trt/1", "onnx_digest": onnx_digest, "precision": params.precision, "tf32": tf32,
            "workspace": params.workspace, "profile": _profile_json(profile), "calibration": calibration_info}
    _write_info(ctx.out_dir, info)
    return {"tensorrt_version": trt.__version__, "precision_flag": flag or "none (fp32)", "tf32": tf32,
            "profile": _profile_json(profile), "workspace": params.workspace, "build_seconds": round(seconds, 3),
            "timing_cache_loaded_bytes": len(timing_bytes), "calibration": calibration_info}


def _logger(trt: Any, log: Any) -> Any:
    """A TensorRT logger that writes warnings and errors to the build log and keeps the last error."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                self.last_error = msg
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                log(f"tensorrt [{severity.name}] {msg}")

    return Logger()


def _calibrator(trt: Any, batches: list[dict[str, Any]], names: list[str], cache_file: Path | None) -> Any:
    """An entropy calibrator feeding ``batches`` (numpy) through torch CUDA buffers."""
    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by TensorRT's Python trampolines
            self._batches = iter(batches)
            self._buffers: list[Any] = []

        def get_batch_size(self) -> int:
            return 1  # explicit-batch networks: the batch is part of each buffer's shape

        def get_batch(self, requested: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                self._buffers = []
                return None
            self._buffers = [torch.from_numpy(batch[name]).cuda().contiguous() for name in requested]
            return [int(buffer.data_ptr()) for buffer in self._buffers]

        def read_calibration_cache(self) -> bytes | None:
            if cache_file is not None and cache_file.exists():
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_file is not None:
                _atomic_write(cache_file, cache)

    return Calibrator()


# -- ONNX Runtime GPU providers -------------------------------------------------------------------
def require_provider(provider: str) -> Any:
    """onnxruntime, imported here, offering ``provider``; else Skip with what it does offer."""
    try:
        import onnxruntime
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    available = onnxruntime.get_available_providers()
    if provider not in available:
        raise Skip(f"onnxruntime {onnxruntime.__version__} has no {provider} (it offers {', '.join(available)}); "
                   f"install an onnxruntime-gpu build with it")
    return onnxruntime


def _session(onnxruntime: Any, path: Path, providers: list[Any], expected: str) -> Any:
    session = ort_session(path, providers)
    if session.get_providers()[0] != expected:  # onnxruntime falls back silently when a provider fails
        raise Skip(f"onnxruntime could not start {expected} here (it fell back to "
                   f"{', '.join(session.get_providers())}); see the build log for its error")
    return session


def build_ort_trt(ctx: BuildContext) -> dict[str, Any]:
    """``model.onnx`` plus the TensorRT engines that ONNX Runtime builds for it (``trt_engines/``)."""
    params = config.check_params(ctx.params, ctx.precision, where=ctx.target, precisions=("fp32", "fp16", "bf16"),
                                 max_batch_size=ctx.max_batch_size)
    profile = config.profile_shapes(ctx.samples, ctx.model.batch_dim, params.max_batch_size,
                                    params.opt_batch_size, where=ctx.target,
                                    axes=config.axis_ranges(ctx.model, ctx.samples))
    onnxruntime = require_provider(ORT_TRT)
    model = ctx.copy_input(ONNX_FILE)
    engine_dir = ctx.out_dir / ORT_ENGINE_DIR
    engine_dir.mkdir()
    options = ort_trt_options(engine_dir, ctx.cache_dir, params.precision, params.workspace, profile)
    started = time.perf_counter()
    session = _session(onnxruntime, model, [(ORT_TRT, options), (ORT_CUDA, cuda_provider_options(params.precision))],
                       ORT_TRT)
    for sample in ctx.samples:  # builds and caches the engine for the profile
        session.run(None, dict(sample))
    seconds = time.perf_counter() - started
    engines = sorted(p.name for p in engine_dir.iterdir())
    ctx.log(f"ort-trt: engine cache {engines} built in {seconds:.1f} s")
    _write_info(ctx.out_dir, {"format": "navbuild-ort-trt/1", "onnx_digest": digest_file(model),
                              "precision": params.precision, "workspace": params.workspace,
                              "profile": _profile_json(profile)})
    return {"onnxruntime_version": onnxruntime.__version__, "provider": ORT_TRT, "engines": engines,
            "profile": _profile_json(profile), "build_seconds": round(seconds, 3)}


def build_ort_cuda(ctx: BuildContext) -> dict[str, Any]:
    """``model.onnx`` checked to load and run on ONNX Runtime's CUDA execution provider."""
    onnxruntime = require_provider(ORT_CUDA)
    model = ctx.copy_input(ONNX_FILE)
    session = _session(onnxruntime, model, [(ORT_CUDA, cuda_provider_options(ctx.precision))], ORT_CUDA)
    session.run(None, dict(ctx.samples[0]))
    return {"onnxruntime_version": onnxruntime.__version__, "provider": ORT_CUDA}
