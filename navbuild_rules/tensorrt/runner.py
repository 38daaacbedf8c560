"""Runners ``tensorrt`` (a TensorRT plan, torch CUDA tensors as I/O buffers, their device pointers
given to the execution context) and ``ort-trt`` / ``ort-cuda`` (ONNX Runtime with the TensorRT or
CUDA execution provider, inputs bound on the GPU through ``navbuild_rules/onnx/iobinding.py``). ``run`` returns
torch CUDA tensors (tensorrt) or OrtValues on the GPU (ort-*): no output visits the host."""
from __future__ import annotations

from typing import Any, Mapping


from navbuild.lazy import lazy_import
from navbuild.rule import Needs
from navbuild.runner import Runner, RunnerError, TensorSpec, output_names
from navbuild_rules.onnx import iobinding
from navbuild_rules.onnx.loader import cuda_provider_options, input_specs
from navbuild_rules.tensorrt.loader import (ONNX_FILE, ORT_CUDA, ORT_TRT, PLAN_FILE, deserialize_plan, ort_session,
                                   ort_trt_options_from_info, read_build_info)

np = lazy_import("numpy")
onnxruntime = lazy_import("onnxruntime")
trt = lazy_import("tensorrt")
torch = lazy_import("torch")

# TensorRT DataType name -> torch dtype name
TRT_TO_TORCH = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32",
                "INT64": "int64", "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


def torch_dtype_for(trt_dtype_name: str) -> str:
    try:
        return TRT_TO_TORCH[trt_dtype_name]
    except KeyError:
        raise RunnerError(f"tensorrt: I/O tensors of type {trt_dtype_name} are not supported") from None


def rename_outputs(model: Any, names: list[str], values: list[Any]) -> dict[str, Any]:
    """Keep the engine's output names when they are the model's, else name them by position."""
    if model.outputs and sorted(names) == sorted(model.outputs):
        return dict(zip(names, values))
    return dict(zip(output_names(model, len(values)), values))


class TensorRTRunner(Runner):
    """Deserializes ``model.plan`` and runs it with ``execute_async_v3`` on torch's current stream:
    the inputs' and the outputs' device pointers (torch tensors) are the engine's I/O addresses, so a
    torch CUDA input is used where it lies, and a call can be captured in a CUDA graph."""

    name = "tensorrt"
    devices = ("cuda",)
    needs = Needs(modules=("tensorrt", "torch"), gpu=True)
    capturable = True

    def activate_impl(self) -> None:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = deserialize_plan(trt, self._runtime, self.artifact_dir)
        if self._engine is None:
            raise RunnerError(f"{self.name}: TensorRT could not deserialize {PLAN_FILE} (built for another "
                              f"GPU or TensorRT version?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: getattr(torch, torch_dtype_for(self._engine.get_tensor_dtype(n).name)) for n in names}
        self._specs = {n: TensorSpec(torch_dtype_for(self._engine.get_tensor_dtype(n).name),
                                     tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(n)))
                       for n in self._inputs}

    def input_specs_impl(self) -> dict[str, TensorSpec]:
        return self._specs

    def deactivate_impl(self) -> None:
        self._context = self._engine = self._runtime = None

    def runtime_info(self) -> dict[str, Any]:
        return {"tf32": bool(read_build_info(self.artifact_dir).get("tf32", False))}  # the plan's builder flag

    def prepare_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        from navbuild.tensors import to_torch

        return {name: to_torch(feed[name]).to("cuda").contiguous() for name in self._inputs}

    def run_prepared_impl(self, prepared: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        for name, tensor in prepared.items():
            self._context.set_input_shape(name, tuple(tensor.shape))
            self._context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(dim < 0 for dim in shape):
                raise RunnerError(f"{self.name}: output {name} has a data-dependent shape {shape}")
            outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
            self._context.set_tensor_address(name, outputs[name].data_ptr())
        if not self._context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RunnerError(f"{self.name}: execute_async_v3 failed")
        return outputs

    def outputs_impl(self, result: Mapping[str, Any]) -> Mapping[str, Any]:
        return rename_outputs(self.model, list(result), list(result.values()))

    def synchronize_impl(self) -> None:
        self._torch.cuda.synchronize()


class OrtGpuRunner(Runner):
    """ONNX Runtime on one GPU provider; ``prepare`` binds inputs on the GPU (io_binding)."""

    name = "ort-gpu"
    provider = ""
    devices = ("cuda",)
    needs = Needs(modules=("onnxruntime",), gpu=True)

    def provider_options(self) -> dict[str, Any]:
        return {}

    def activate_impl(self) -> None:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        if self.provider not in onnxruntime.get_available_providers():
            raise RunnerError(f"{self.name}: onnxruntime {onnxruntime.__version__} has no {self.provider}")
        self._ort = onnxruntime
        providers = [(self.provider, self.provider_options())]
        if self.provider != ORT_CUDA:  # the nodes the first provider leaves, TF32 as for the target
            providers.append((ORT_CUDA, cuda_provider_options(self.precision)))
        self._session = ort_session(self.artifact_dir / ONNX_FILE, providers)
        if self._session.get_providers()[0] != self.provider:
            raise RunnerError(f"{self.name}: onnxruntime fell back to {self._session.get_providers()}")
        self._output_names = [o.name for o in self._session.get_outputs()]

    def deactivate_impl(self) -> None:
        self._session = None

    def input_specs_impl(self) -> dict[str, TensorSpec]:
        return input_specs(self._session)

    def prepare_impl(self, feed: dict[str, Any]) -> Any:
        return iobinding.bind(self._session, feed, self._output_names)

    def run_prepared_impl(self, prepared: Any) -> Any:
        self._session.run_with_iobinding(prepared)
        return prepared

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        named = iobinding.outputs(result, self._output_names)
        return rename_outputs(self.model, list(named), list(named.values()))

    def infer_impl(self, feed: dict[str, Any]) -> Mapping[str, Any]:
        binding = self.run_prepared_impl(self.prepare_impl(feed))
        return rename_outputs(self.model, self._output_names, binding.copy_outputs_to_cpu())

    def synchronize_impl(self) -> None:
        pass  # run_with_iobinding returns once the outputs are written


class OrtTensorRTRunner(OrtGpuRunner):
    """ONNX Runtime's TensorRT provider, loading the engines the build cached in ``trt_engines/``."""

    name = "ort-trt"
    provider = ORT_TRT

    def provider_options(self) -> dict[str, Any]:
        assert self.artifact_dir is not None
        return ort_trt_options_from_info(self.artifact_dir)


class OrtCudaRunner(OrtGpuRunner):
    name = "ort-cuda"
    provider = ORT_CUDA

    def provider_options(self) -> dict[str, Any]:
        return cuda_provider_options(self.precision)

    def runtime_info(self) -> dict[str, Any]:
        return {"tf32": cuda_provider_options(self.precision)["use_tf32"] == "1"}
