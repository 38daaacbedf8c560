"""Runner ``torch-trt``: loads the saved Torch-TensorRT ExportedProgram and runs its module on CUDA
(torch tensors in and out, on the GPU)."""
from __future__ import annotations

from typing import Any, Mapping


from navbuild.lazy import lazy_import
from navbuild.rule import Needs
from navbuild.runner import Runner, RunnerError
from navbuild_rules.torch import model_io
from navbuild_rules.torch_tensorrt.loader import load_program

np = lazy_import("numpy")
torch = lazy_import("torch")


class TorchTensorRTRunner(Runner):
    name = "torch-trt"
    devices = ("cuda",)
    needs = Needs(modules=("torch_tensorrt",), gpu=True)
    capturable = True  # its engines run on torch's current stream

    def activate_impl(self) -> None:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        self._torch = torch
        self._module = load_program(self.artifact_dir)
        self.input_float_type = model_io.DTYPES[self.precision]  # float inputs at the artifact's precision
        self._outputs = model_io.OutputBinder(self.model)

    def deactivate_impl(self) -> None:
        self._module = None

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        return model_io.to_tensors(self.model, feed, "cuda")

    def run_prepared_impl(self, prepared: Any) -> Any:
        with self._torch.no_grad():
            return self._module(*prepared)

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        return self._outputs.bind(result)

    def synchronize_impl(self) -> None:
        self._torch.cuda.synchronize()
