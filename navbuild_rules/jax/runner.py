"""Runner ``jax-jit``: the source model, ``jax.jit(apply)`` on the CPU or a GPU.

Parameters and inputs are placed on the device once (``prepare``: numpy arrays copied there,
another library's tensors shared through DLPack, then moved only if they lie elsewhere); a call
returns as soon as the work is queued, so ``synchronize`` blocks until the last result is ready.
``run`` returns JAX arrays by name, on the device; torch reads them through DLPack. On a GPU, float32 matmuls
and convolutions run at JAX's "highest" precision (its default lets Ampere and newer use TF32):
these targets are fp32 (docs/config.md, "TF32").
"""
from __future__ import annotations

from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import Needs, Skip
from navbuild.runner import Runner, RunnerError
from navbuild_rules.jax import loader

jax = lazy_import("jax")
np = lazy_import("numpy")


class JaxJitRunner(Runner):
    name = "jax-jit"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("jax",))
    tools = loader.TOOLS
    loads_source = True  # the model's code is the artifact

    def activate_impl(self) -> None:
        if self.artifact_dir is not None:
            loader.read_recipe(self.artifact_dir)  # the recipe this runner reads
        try:
            self._device = loader.device(self.device)
        except RuntimeError as exc:  # no GPU backend in this jaxlib
            raise Skip(f"{self.name}: JAX has no {self.device} device here ({exc})") from None
        apply, params = loader.load_model(self.model)
        if self.device == "cuda":  # after the model's code, which may set it too
            jax.config.update("jax_default_matmul_precision", "highest")
        self._params = jax.device_put(params, self._device)
        self._jitted = jax.jit(apply)
        self._last: Any = None

    def deactivate_impl(self) -> None:
        self._params = self._jitted = self._last = None

    def runtime_info(self) -> dict[str, Any]:
        return {"tf32": False}

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> list[Any]:
        try:
            return [jax.device_put(_as_jax(feed[name]), self._device) for name in loader.input_order(self.model, feed)]
        except KeyError as exc:
            raise RunnerError(f"{self.name}: input {exc} is missing") from None

    def run_prepared_impl(self, prepared: list[Any]) -> Any:
        self._last = self._jitted(self._params, *prepared)
        return self._last

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        return loader.named_outputs(self.model, result)

    def synchronize_impl(self) -> None:
        if self._last is not None:
            jax.block_until_ready(self._last)


def _as_jax(value: Any) -> Any:
    """numpy as it is (``device_put`` copies it); another library's tensor shared through DLPack."""
    if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__") or isinstance(value, jax.Array):
        return value
    try:
        return jax.dlpack.from_dlpack(value)
    except Exception:  # noqa: BLE001 - a device or a type JAX does not take: through the host
        from navbuild.tensors import to_numpy

        return to_numpy(value)
