"""The ONNX Runtime runner: one ``model.onnx`` on the execution provider for the device.

cpu -> CPUExecutionProvider; cuda -> CUDAExecutionProvider (with the CPU provider behind it for the
nodes CUDA has no kernel for). A missing provider skips the target (``navbuild.rule.Skip``: a fact
about the machine), never a silent fall back to the CPU.
On cuda the inputs are placed on the GPU once in ``prepare`` (shared through DLPack when they are
there already, ``iobinding.py``) and the outputs stay there (I/O binding), so a profiled call does
not time host copies and ``run`` returns ``OrtValue``s on the GPU, which torch reads without a copy.
On the CPU a torch tensor is read as a numpy view of its memory and ``run`` returns numpy arrays. An export built with
``channels_last = true`` (``runtime.json``) runs on CUDA with the provider's ``prefer_nhwc`` option:
convolutions in NHWC layout, the graph's own NCHW inputs transposed inside ONNX Runtime. The CPU
provider has no such option; there the flag changes nothing. The CUDA provider runs float32
matmuls and convolutions in TF32 by default; its ``use_tf32`` option is off except for a ``tf32``
target (``loader.cuda_provider_options``).
Inputs may be of any numeric type the graph takes (float64, int32, uint8...: ``loader.NUMPY_TYPES``):
the feed check of ``navbuild.runner.Runner`` casts a float sample to the graph's float type and an
integer one to its integer type when the values fit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import Needs, Skip
from navbuild.runner import Runner, RunnerError
from navbuild_rules.onnx import iobinding
from navbuild_rules.onnx.loader import ONNX_FILE, channels_last, cuda_provider_options, inference_session, input_specs

np = lazy_import("numpy")
onnxruntime = lazy_import("onnxruntime")

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("onnxruntime",))
    tools = ("onnxruntime",)
    loads_source = False

    provider: str | None = None
    layout = "NCHW"  # "NHWC" when the CUDA provider runs convolutions channels-last
    tf32 = False  # whether the CUDA provider runs float32 matmuls and convolutions in TF32

    def activate_impl(self) -> None:
        wanted = PROVIDERS.get(self.device)
        if wanted is None:
            raise RunnerError(f"{self.name}: no execution provider for device {self.device!r}")
        available = onnxruntime.get_available_providers()
        if wanted not in available:  # a fact about this machine: the check is skipped, not failed
            raise Skip(f"{self.name}: {wanted} is not available for device {self.device!r} (this "
                       f"onnxruntime offers {', '.join(available)}; install onnxruntime-gpu for cuda)")
        provider_options: dict[str, str] = {}
        if self.device == "cuda":
            provider_options.update(cuda_provider_options(self.precision))
            self.tf32 = provider_options["use_tf32"] == "1"
        if self.device == "cuda" and channels_last(self.artifact_dir):
            provider_options["prefer_nhwc"] = "1"
            self.layout = "NHWC"
        providers = [(wanted, provider_options)] + ([PROVIDERS["cpu"]] if wanted != PROVIDERS["cpu"] else [])
        self._session = inference_session(self._model_path(), providers)
        self.provider = self._session.get_providers()[0]
        if self.provider != wanted:
            raise RunnerError(f"{self.name}: asked for {wanted}, onnxruntime gave {self.provider}")
        self._inputs = input_specs(self._session)
        self._outputs = [value.name for value in self._session.get_outputs()]
        self._binding = None

    def deactivate_impl(self) -> None:
        self._session = self._binding = None

    def runtime_info(self) -> dict[str, Any]:
        return {"provider": self.provider, "layout": self.layout, "tf32": self.tf32}

    def input_specs_impl(self) -> dict[str, Any]:
        return self._inputs

    def prepare_impl(self, feed: dict[str, Any]) -> Any:
        if self.device == "cpu":  # numpy views of host tensors (a torch tensor's memory is shared)
            from navbuild.tensors import to_numpy

            return {name: np.ascontiguousarray(to_numpy(value)) for name, value in feed.items()}
        return iobinding.bind(self._session, feed, self._outputs)

    def run_prepared_impl(self, prepared: Any) -> Any:
        try:
            if self.device == "cpu":
                return self._session.run(self._outputs, prepared)
            self._session.run_with_iobinding(prepared)
            self._binding = prepared
            return prepared
        except Exception as exc:
            raise RunnerError(f"{self.name}: model {self.model.name} failed: {type(exc).__name__}: {exc}") from exc

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        if self.device == "cpu":
            return dict(zip(self._outputs, result))
        return iobinding.outputs(result, self._outputs)

    def infer_impl(self, feed: dict[str, Any]) -> Mapping[str, Any]:
        if self.device == "cpu":
            return self.run_impl(feed)
        return dict(zip(self._outputs, self.run_prepared_impl(self.prepare_impl(feed)).copy_outputs_to_cpu()))

    def synchronize_impl(self) -> None:
        if self._binding is not None:
            self._binding.synchronize_outputs()

    def _model_path(self) -> Path:
        if self.artifact_dir is None or not (Path(self.artifact_dir) / ONNX_FILE).is_file():
            raise RunnerError(f"{self.name}: {ONNX_FILE} is missing from {self.artifact_dir}")
        return Path(self.artifact_dir) / ONNX_FILE
