"""A JAX model for navbuild: a function plus its parameters.

``build_model`` returns ``(apply, params)``; the model runs as ``apply(params, image)``. JAX is
imported inside the functions that need it, so the samples (numpy only) build on a machine without
it. The parameters live in ``params.npz`` (written by ``make_params``).
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PARAMS = HERE / "params.npz"
SHAPES = {"conv": (3, 3, 3, 8), "conv_bias": (8,), "dense": (8, 10), "dense_bias": (10,)}


def apply(params, image):
    """image (N, 16, 16, 3) NHWC -> logits (N, 10): a convolution, ReLU, average pool, dense."""
    import jax
    import jax.numpy as jnp

    x = jax.lax.conv_general_dilated(image, params["conv"], window_strides=(1, 1), padding="SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.nn.relu(x + params["conv_bias"])
    return jnp.mean(x, axis=(1, 2)) @ params["dense"] + params["dense_bias"]


def build_model():
    with np.load(PARAMS) as stored:
        return apply, {name: stored[name] for name in SHAPES}


def make_samples():
    rng = np.random.default_rng(0)
    return [{"image": rng.standard_normal((batch, 16, 16, 3)).astype(np.float32)} for batch in (1, 2, 4)]


def make_params() -> None:
    rng = np.random.default_rng(3)
    np.savez(PARAMS, **{name: (rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in SHAPES.items()})


if __name__ == "__main__":
    make_params()
