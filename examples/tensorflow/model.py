"""Two TensorFlow 2 models for navbuild: a Keras image classifier and a ``tf.Module``.

TensorFlow is imported inside the functions that build the models, so the samples (numpy only)
build on a machine without it. The weights live in ``weights.npz`` (written by ``make_weights``).
"""
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "weights.npz"
SHAPES = {  # name -> shape, in the order Keras lists the classifier's weights
    "conv_kernel": (3, 3, 3, 8), "conv_bias": (8,), "dense_kernel": (8, 10), "dense_bias": (10,),
    "score_w": (6, 4), "score_b": (4,),
}
CLASSIFIER_WEIGHTS = ("conv_kernel", "conv_bias", "dense_kernel", "dense_bias")


def build_classifier():
    """A Keras functional model: image (N, 16, 16, 3) -> logits (N, 10)."""
    import tensorflow as tf

    keras = tf.keras
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(image, keras.layers.Dense(10, name="dense")(x), name="classifier")
    with np.load(WEIGHTS) as weights:
        model.set_weights([weights[name] for name in CLASSIFIER_WEIGHTS])
    return model


def build_scorer():
    """A ``tf.Module``: features (N, 6) float32 and scale (N, 1) float32 -> {"score", "probs"}."""
    import tensorflow as tf

    class Scorer(tf.Module):
        def __init__(self, w, b):
            super().__init__(name="scorer")
            self.w, self.b = tf.Variable(w, trainable=False), tf.Variable(b, trainable=False)

        def __call__(self, features, scale):
            logits = tf.matmul(features, self.w) + self.b
            return {"score": tf.reduce_max(logits, axis=-1, keepdims=True) * scale,
                    "probs": tf.nn.softmax(logits, axis=-1)}

    with np.load(WEIGHTS) as weights:
        return Scorer(weights["score_w"], weights["score_b"])


def classifier_samples():
    rng = np.random.default_rng(0)
    return [{"image": rng.standard_normal((batch, 16, 16, 3)).astype(np.float32)} for batch in (1, 2, 4)]


def scorer_samples():
    rng = np.random.default_rng(1)
    return [{"features": rng.standard_normal((batch, 6)).astype(np.float32),
             "scale": rng.uniform(0.5, 2.0, (batch, 1)).astype(np.float32)} for batch in (1, 3)]


def make_weights() -> None:
    rng = np.random.default_rng(7)
    np.savez(WEIGHTS, **{name: (rng.standard_normal(shape) * 0.3).astype(np.float32) for name, shape in SHAPES.items()})


if __name__ == "__main__":
    make_weights()
