"""File names of the tensorflow family's artifacts, and how a model or a SavedModel is called
(Polygraphy's ``loader.py``). ``build.py`` writes SavedModels, ``runner.py`` loads them; both call
models through ``call`` and name their outputs through ``named_outputs``.

A SavedModel target is the folder SAVEDMODEL_DIR holding one signature, SIGNATURE, whose inputs
and outputs carry the model's names: the names Triton's TensorFlow backend serves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec, TritonModel
from navbuild.runner import input_order, named_outputs  # noqa: F401 (the family's names)

np = lazy_import("numpy")
tf = lazy_import("tensorflow")

FRAMEWORK = "tensorflow"
TOOLS = ("tensorflow", "tensorflow-cpu", "keras")  # whichever TensorFlow is installed, and its Keras
SAVEDMODEL_DIR = "savedmodel"
SAVEDMODEL_OUTPUTS = (f"{SAVEDMODEL_DIR}/*",)
SIGNATURE = "serving_default"
REFERENCE_FILE = "reference.tensors"
BUILD_INFO = "build.json"  # tf-trt: what the plan-holding SavedModel was built from
# fingerprint.pb holds a random id per save; TensorFlow and Triton load a SavedModel without it
UNSTABLE_FILES = ("fingerprint.pb",)
TRITON_SAVEDMODEL = TritonModel(backend="tensorflow", platform="tensorflow_savedmodel",
                                files={f"{SAVEDMODEL_DIR}/": "model.savedmodel/"})


def savedmodel_path(artifact_dir: Path) -> Path:
    return Path(artifact_dir) / SAVEDMODEL_DIR


def load_signature(artifact_dir: Path) -> tuple[Any, Any]:
    """``(loaded object, its serving signature)``; keep the object alive while calling the signature."""
    loaded = tf.saved_model.load(str(savedmodel_path(artifact_dir)))
    return loaded, loaded.signatures[SIGNATURE]


def signature_inputs(signature: Any) -> dict[str, Any]:
    """Input name -> TensorSpec of a loaded signature."""
    return dict(signature.structured_input_signature[1])


def is_keras(model: Any) -> bool:
    return "keras" in type(model).__module__ and isinstance(getattr(model, "inputs", None), list)


def call(model: Any, spec: ModelSpec, feed: Mapping[str, Any]) -> Any:
    """Run the source model on ``feed`` (name -> tensor): a Keras model gets one tensor, a dict by its
    inputs' names or a list in their order; any other callable (a ``tf.Module``) gets the inputs as
    positional arguments in the model's input order."""
    ordered = [feed[name] for name in input_order(spec, feed)]
    if not is_keras(model):
        return model(*ordered)
    names = [tensor.name for tensor in model.inputs]
    if len(names) == 1:
        return model(ordered[0], training=False)
    if sorted(names) == sorted(feed):
        return model({name: feed[name] for name in names}, training=False)
    return model(ordered, training=False)


def tensor_specs(spec: ModelSpec, sample: Mapping[str, Any]) -> list[Any]:
    """One ``tf.TensorSpec`` per input, named after it: the batch and declared dynamic axes unknown."""
    specs = []
    for name in input_order(spec, sample):
        array = np.asarray(sample[name])
        dynamic = {spec.batch_dim, *(int(axis) for axis in spec.dynamic_axes.get(name, {}))}
        shape = [None if axis in dynamic else int(size) for axis, size in enumerate(array.shape)]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(array.dtype), name=name))
    return specs


def to_numpy(value: Any) -> Any:
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return array.astype("float32") if array.dtype == np.float16 else array
