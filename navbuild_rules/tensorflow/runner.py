"""Runner ``tf-savedmodel``: a SavedModel's serving signature on the CPU or a GPU.

Inputs (checked and cast to the signature's float types by the base class, from the signature's
``input_specs``) are placed on the device in ``prepare``: numpy arrays copied there, another
library's tensors (torch) shared through DLPack where TensorFlow accepts them, else copied. ``run``
returns TensorFlow tensors by name, on the device; torch reads them through DLPack. TensorFlow runs eagerly and asynchronously on a GPU, so
``synchronize`` waits by reading one output back. On a GPU, TensorFlow's TF32 (on by default on
Ampere and newer) is turned off: these targets are fp32 (docs/config.md, "TF32").
"""
from __future__ import annotations

from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import Needs, Skip
from navbuild.runner import Runner, RunnerError, TensorSpec
from navbuild_rules.tensorflow import loader

np = lazy_import("numpy")
tf = lazy_import("tensorflow")


class SavedModelRunner(Runner):
    name = "tf-savedmodel"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("tensorflow",))
    tools = loader.TOOLS
    loads_source = False

    def activate_impl(self) -> None:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        if self.device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise Skip(f"{self.name}: this TensorFlow sees no GPU (tensorflow-cpu, or no CUDA libraries)")
        self._device = "/GPU:0" if self.device == "cuda" else "/CPU:0"
        if self.device == "cuda":
            tf.config.experimental.enable_tensor_float_32_execution(False)
        with tf.device(self._device):
            self._loaded, self._signature = loader.load_signature(self.artifact_dir)
        self._specs = loader.signature_inputs(self._signature)
        self._last: Any = None

    def deactivate_impl(self) -> None:
        self._loaded = self._signature = self._last = None

    def runtime_info(self) -> dict[str, Any]:
        return {"tf32": False}

    def input_specs_impl(self) -> dict[str, TensorSpec]:
        return {name: TensorSpec(spec.dtype.name, None if spec.shape.rank is None else tuple(spec.shape.as_list()))
                for name, spec in self._specs.items()}

    def prepare_impl(self, feed: dict[str, Any]) -> dict[str, Any]:
        with tf.device(self._device):
            return {name: _on_device(value) for name, value in feed.items()}

    def run_prepared_impl(self, prepared: dict[str, Any]) -> Any:
        with tf.device(self._device):
            self._last = self._signature(**prepared)
        return self._last

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        return dict(result)

    def synchronize_impl(self) -> None:
        if self._last:
            next(iter(self._last.values())).numpy()


def _on_device(value: Any) -> Any:
    """A TensorFlow tensor for the call (inside the runner's device scope): numpy arrays copied there,
    another library's tensors shared through DLPack when TensorFlow accepts them (it wants its own
    alignment and a device it knows), else copied through the host."""
    if isinstance(value, np.ndarray):
        return tf.constant(value)
    if isinstance(value, tf.Tensor):
        return value
    if hasattr(value, "__dlpack__"):
        try:
            return tf.experimental.dlpack.from_dlpack(value.__dlpack__())
        except Exception:  # noqa: BLE001 - unaligned, or a device TensorFlow does not see: a copy
            pass
    from navbuild.tensors import to_numpy

    return tf.constant(to_numpy(value))
