"""config.pbtxt for one target of the build status (Triton's ``ModelConfig`` protobuf).

The config is built with tritonclient's ``model_config_pb2`` and written with protobuf's
``text_format``, so Triton and this module read the same schema. tritonclient is imported inside the
functions that need it: importing this module costs nothing.

The backend, its platform, the tensor names and the I/O types come from the ``TritonModel`` that
the target's rule declares (``navbuild.rule``); this module knows no format. Tensors keep the
status names unless the rule declares another convention (libtorch binds by position:
``<name>__<index>``). A target served through navbuild's runner uses ``PYTHON``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from navbuild.rule import TritonModel


class TritonConfigError(ValueError):
    pass


# Triton's python backend running navbuild's runner (triton_python_model.py), which casts: the
# config declares the model's own types
PYTHON = TritonModel(backend="python", platform=None, files={}, io_types="model")

# numpy dtype names (as the status writes them) -> Triton data types
DTYPES: dict[str, str] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
    "object": "TYPE_STRING", "bytes": "TYPE_STRING", "str": "TYPE_STRING",
}

INSTANCE_KINDS = ("auto", "cpu", "gpu")
TENSORRT_ACCELERATOR = "tensorrt"  # Triton's name of the GPU execution accelerator of --ort-tensorrt
PREFERRED_WITHIN = 0.9  # batch sizes within 10% of the best throughput are preferred
PREFERRED_MAX = 3


def triton_dtype(dtype: str) -> str:
    try:
        return DTYPES[str(dtype)]
    except KeyError:
        raise TritonConfigError(f"data type {dtype!r} has no Triton equivalent; known: "
                                f"{', '.join(sorted(DTYPES))}") from None


def batching_enabled(model: Mapping[str, Any]) -> bool:
    """Triton batches along the first dimension only: max_batch_size > 0 and batch_dim == 0."""
    return int(model.get("max_batch_size") or 0) > 0 and model.get("batch_dim", 0) == 0


def tensor_dims(shape: Sequence[int], batching: bool) -> tuple[list[int], list[int] | None]:
    """Triton ``dims`` (batch dimension removed when batching) and a ``reshape`` when needed.

    A tensor holding one scalar per batch item (shape ``[-1]``) has ``dims: [1]`` and an empty
    reshape, as Triton requires.
    """
    dims = [int(d) for d in shape]
    if batching:
        dims = dims[1:]
        if not dims:
            return [1], []
    return dims, None


def preferred_batch_sizes(profile: Mapping[str, Any] | None, max_batch_size: int) -> list[int]:
    """Batch sizes whose measured throughput is within 10% of the best, at most 3, ascending.

    Only points with ``batch_size <= max_batch_size`` count; no profile (or no point) gives none.
    """
    points = [p for p in (profile or {}).get("points") or ()
              if 0 < int(p.get("batch_size", 0)) <= max_batch_size and p.get("throughput")]
    if not points:
        return []
    best = max(float(p["throughput"]) for p in points)
    good = sorted((p for p in points if float(p["throughput"]) >= PREFERRED_WITHIN * best),
                  key=lambda p: (-float(p["throughput"]), int(p["batch_size"])))
    return sorted({int(p["batch_size"]) for p in good[:PREFERRED_MAX]})


def io_names(model: Mapping[str, Any], serving: TritonModel = PYTHON
             ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(status name, Triton name)`` pairs for the inputs and for the outputs."""
    def names(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
        return [(spec["name"], serving.name_of(spec["name"], i)) for i, spec in enumerate(specs)]

    return names(model.get("inputs") or ()), names(model.get("outputs") or ())


def instance_kind_for(target: Mapping[str, Any], instance_kind: str, ort_tensorrt: bool) -> str:
    """``KIND_GPU`` or ``KIND_CPU``: auto follows the target's device."""
    if instance_kind not in INSTANCE_KINDS:
        raise TritonConfigError(f"instance_kind must be one of {INSTANCE_KINDS}, not {instance_kind!r}")
    if instance_kind == "auto":
        gpu = str(target.get("device", "cpu")).startswith("cuda") or ort_tensorrt
    else:
        gpu = instance_kind == "gpu"
    if ort_tensorrt and not gpu:
        raise TritonConfigError("the TensorRT accelerator of ONNX Runtime needs GPU instances "
                                "(instance_kind='gpu' or 'auto')")
    return "KIND_GPU" if gpu else "KIND_CPU"


def artifact_dtype(tensor: Mapping[str, Any], own_types: Mapping[str, str] | None, io_types: str) -> str:
    """``io_types`` "artifact": the backend feeds the artifact as it is (an fp16 TorchScript file takes
    fp16 inputs). "model": navbuild's runner casts, so the config keeps the model's own types."""
    if io_types == "artifact" and own_types and tensor["name"] in own_types:
        return str(own_types[tensor["name"]])
    return str(tensor["dtype"])


def build_config(model: Mapping[str, Any], target: Mapping[str, Any], *, name: str, serving: TritonModel,
                 instance_kind: str = "auto", instance_count: int = 1, dynamic_batching: bool = True,
                 max_queue_delay_us: int = 0, ort_tensorrt: bool = False) -> Any:
    """The ``ModelConfig`` message for ``target`` of ``model`` (both entries of the build status),
    served as ``serving`` says (the rule's declared ``TritonModel``, or ``PYTHON``)."""
    from tritonclient.grpc import model_config_pb2 as mc

    if ort_tensorrt and TENSORRT_ACCELERATOR not in serving.accelerators:
        raise TritonConfigError(f"backend {serving.backend!r} takes no TensorRT accelerator (target "
                                f"{target.get('target')}); only targets whose rule declares it do")
    batching = batching_enabled(model)
    max_batch_size = int(model.get("max_batch_size") or 0) if batching else 0

    config = mc.ModelConfig(name=name, backend=serving.backend, max_batch_size=max_batch_size)
    if serving.platform:
        config.platform = serving.platform

    input_names, output_names = io_names(model, serving)
    metadata = target.get("metadata") or {}
    for (tensors, pairs, field, own_types) in (
            (model.get("inputs") or (), input_names, config.input, metadata.get("input_types")),
            (model.get("outputs") or (), output_names, config.output, metadata.get("output_types"))):
        for tensor, (_, triton_name) in zip(tensors, pairs):
            dims, reshape = tensor_dims(tensor["shape"], batching)
            dtype = artifact_dtype(tensor, own_types, serving.io_types)
            entry = field.add(name=triton_name, data_type=mc.DataType.Value(triton_dtype(dtype)), dims=dims)
            if reshape is not None:
                entry.reshape.SetInParent()
                entry.reshape.shape.extend(reshape)

    if batching and dynamic_batching:
        config.dynamic_batching.SetInParent()
        config.dynamic_batching.preferred_batch_size.extend(
            preferred_batch_sizes(target.get("profile"), max_batch_size))
        if max_queue_delay_us:
            config.dynamic_batching.max_queue_delay_microseconds = int(max_queue_delay_us)

    kind = instance_kind_for(target, instance_kind, ort_tensorrt)
    config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(kind), count=int(instance_count))

    if ort_tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name=TENSORRT_ACCELERATOR)
        accelerator.parameters["precision_mode"] = "FP16" if target.get("precision") == "fp16" else "FP32"
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
    return config


def config_text(config: Any) -> str:
    """config.pbtxt text: protobuf's text format, deterministic field order."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())
