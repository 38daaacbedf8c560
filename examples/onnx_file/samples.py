"""Sample inputs of the example ONNX file (numpy only)."""
import numpy as np


def make_samples():
    rng = np.random.default_rng(0)
    return [{"image": rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)} for batch in (1, 2, 4)]
