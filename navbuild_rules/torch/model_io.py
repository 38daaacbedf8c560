"""Samples in, outputs out: what every torch rule and runner does the same way.

Inputs. Samples are dicts input-name -> numpy array, ordered as the model's declared inputs (or
the sample's own order when none are declared). The names are checked against the parameters of
the model's ``forward`` (``input_binding``): when they are its parameter names, the model is fed by
name (``forward(input_ids=..., attention_mask=...)``), whatever the order they are declared in;
when none of them is, by position; anything in between is an error that lists both sides.

Outputs (``bind_outputs``). A dict-like result (a dict, a Hugging Face ``ModelOutput``, a
dataclass, a namedtuple) binds by key: the declared outputs are looked up by name (a subset may be
declared), else every key is an output, in the model's order. A tensor or a tuple/list binds by
position: the declared names in order, else ``output__<i>``. Nested values are flattened
(``hidden_states.0``...).

Exporters see plain tensors: ``plain_io.exportable`` wraps a model whose inputs go by name or whose result
is not a tensor or a flat tuple of tensors (``plain_io.PlainIO``), so the exported artifact takes
the inputs by position in the declared order and returns a tuple of tensors in the output order.
torch and numpy are imported on first use (``navbuild.lazy``).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild.runner import input_order, output_names

np = lazy_import("numpy")
torch = lazy_import("torch")


# tf32 is float32 data run with TF32 math on a GPU (tf32.py). int8 is a module its author quantized
# (torch.ao's quantized modules, a quantization toolkit's): it runs as given, float tensors in and
# out, so nothing is cast
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "tf32": "float32", "int8": "float32"}


def torch_dtype(precision: str) -> Any:
    try:
        return getattr(torch, DTYPES[precision])
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(DTYPES)}") from None


def to_tensors(model: ModelSpec, sample: Mapping[str, np.ndarray], device: str = "cpu",
               float_dtype: Any = None) -> tuple[Any, ...]:
    """The sample (numpy arrays, torch tensors, DLPack tensors) as positional tensors on ``device``; float inputs
    cast to ``float_dtype`` if given (a runner's feed comes cast already: ``Runner.checked_feed``)."""
    tensors = []
    for name in input_order(model, sample):
        value = sample[name]
        if isinstance(value, torch.Tensor):  # as it is: a cast or a move happens on its device
            tensor = value
        elif isinstance(value, np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(value))
        else:  # another library's tensor: shared through DLPack
            from navbuild.tensors import to_torch

            tensor = to_torch(value)
        tensor = tensor.to(device)
        if float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(float_dtype)
        tensors.append(tensor)
    return tuple(tensors)


class BindingError(ValueError):
    """A model's declared inputs or outputs do not match what its forward takes or returns."""


# -- inputs -----------------------------------------------------------------------------------------
POSITIONAL, BY_NAME = "positional", "by name"


def input_binding(spec: ModelSpec, model: Any, names: Sequence[str]) -> str:
    """``POSITIONAL`` or ``BY_NAME``: how ``model`` takes the inputs ``names``; BindingError if neither.

    By name when the names are forward's parameters (and not simply its first ones in order, which
    is the same call by position), or when forward takes only ``**kwargs``; by position when none
    of them is a parameter. A name that is not a parameter beside names that are is an error even
    when forward takes ``**kwargs`` (a misspelt input would vanish there).
    """
    try:
        parameters = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return POSITIONAL  # no signature to check against (a builtin or compiled forward)
    kinds = inspect.Parameter
    positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    named = {p.name for p in parameters if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
    matched = [name for name in names if name in named]
    if matched and len(matched) < len(names):
        strangers = [name for name in names if name not in named]
        raise _input_error(spec, names, parameters, f"{', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'}"
                                                    f" not among them")
    if matched:
        missing = [p.name for p in parameters if p.default is kinds.empty and p.name not in names
                   and p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
        if missing:
            raise _input_error(spec, names, parameters, f"forward requires {', '.join(missing)}, which "
                                                        f"{'is' if len(missing) == 1 else 'are'} not an input")
        in_order = [p.name for p in positional[:len(names)]] == list(names)
        return POSITIONAL if in_order else BY_NAME
    if not named and any(p.kind == kinds.VAR_KEYWORD for p in parameters):
        return BY_NAME  # forward(self, **inputs)
    required = [p for p in positional if p.default is kinds.empty]
    takes_varargs = any(p.kind == kinds.VAR_POSITIONAL for p in parameters)
    if len(names) < len(required) or (len(names) > len(positional) and not takes_varargs):
        raise _input_error(spec, names, parameters, f"forward takes {len(required)} to {len(positional)} "
                                                    f"inputs by position, the model declares {len(names)}")
    return POSITIONAL


def _input_error(spec: ModelSpec, names: Sequence[str], parameters: list[Any], why: str) -> BindingError:
    shown = [p.name if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else str(p) for p in parameters]
    return BindingError(
        f"model {spec.name}: inputs {list(names)} do not match forward's parameters {shown}: {why}. Name the "
        f"inputs after forward's parameters (they are then passed by name, in any order), or after none "
        f"of them (they are then passed by position, in the declared order)")


def call(model: Any, names: Sequence[str], tensors: Sequence[Any], binding: str) -> Any:
    if binding == BY_NAME:
        return model(**dict(zip(names, tensors)))
    return model(*tensors)


# -- outputs ----------------------------------------------------------------------------------------
def flatten(outputs: Any) -> list[Any]:
    """A model's return value as a flat list of tensors (tuples, lists and dicts in their order)."""
    return [tensor for _, tensor in tensor_leaves(outputs, None)]


def keyed_items(outputs: Any) -> list[tuple[str, Any]] | None:
    """``(key, value)`` of a dict-like result (dict, ModelOutput, dataclass, namedtuple), None values
    left out; None for a tensor, a tuple or a list."""
    if isinstance(outputs, Mapping):
        items = list(outputs.items())
    elif dataclasses.is_dataclass(outputs) and not isinstance(outputs, type):
        items = [(field.name, getattr(outputs, field.name)) for field in dataclasses.fields(outputs)]
    elif isinstance(outputs, tuple) and hasattr(outputs, "_fields"):
        items = list(zip(outputs._fields, outputs))
    else:
        return None
    return [(str(key), value) for key, value in items if value is not None]


def tensor_leaves(value: Any, path: str | None) -> list[tuple[str | None, Any]]:
    """Every tensor inside ``value`` with its dotted key path (None where the top level is positional)."""
    def join(key: Any) -> str | None:
        return None if path is None else (str(key) if path == "" else f"{path}.{key}")

    items = keyed_items(value)
    if items is not None:
        return [leaf for key, item in items for leaf in tensor_leaves(item, f"{path}.{key}" if path else key)]
    if isinstance(value, (tuple, list)):
        return [leaf for index, item in enumerate(value) for leaf in tensor_leaves(item, join(index))]
    return [(path, value)]


def bind_outputs(model: ModelSpec, outputs: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` of every output: by key for a dict-like result, else by position."""
    bound = _bound_outputs(model, outputs)
    odd = [value for _, value in bound if not isinstance(value, torch.Tensor)] if bound else [outputs]
    if odd:
        text = repr(odd[0])
        raise BindingError(f"model {model.name} returned {type(odd[0]).__name__} "
                           f"{text if len(text) <= 40 else text[:37] + '...'} as an output; navbuild deploys "
                           f"models whose outputs are tensors (a tensor, or a tuple, list or dict of tensors)")
    return bound


def _bound_outputs(model: ModelSpec, outputs: Any) -> list[tuple[str, Any]]:
    if keyed_items(outputs) is None:
        leaves = flatten(outputs)
        return list(zip(output_names(model, len(leaves)), leaves))
    found = dict(tensor_leaves(outputs, ""))
    if not model.outputs:
        return list(found.items())
    missing = [name for name in model.outputs if name not in found]
    if missing:
        raise BindingError(f"model {model.name}: declared output{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} not among the keys that "
                           f"forward returns: {list(found)}")
    return [(name, found[name]) for name in model.outputs]


class OutputBinder:
    """``bind_outputs`` of one runner, with the names remembered: a result that is a tensor or a
    flat tuple or list of tensors, of a length seen before, is named without walking it again (a
    small model's call costs microseconds, and this is one of them)."""

    def __init__(self, model: ModelSpec) -> None:
        self.model = model
        self._names: dict[tuple[type, int], list[str]] = {}

    def bind(self, outputs: Any) -> dict[str, Any]:
        values = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        if type(values) not in (tuple, list):  # dict-like: by key, as bind_outputs reads it
            return dict(bind_outputs(self.model, outputs))
        key = (type(outputs), len(values))
        names = self._names.get(key)
        if names is not None and all(isinstance(value, torch.Tensor) for value in values):
            return dict(zip(names, values))
        bound = bind_outputs(self.model, outputs)
        if is_plain(outputs):
            self._names[key] = [name for name, _ in bound]
        return dict(bound)


def is_plain(outputs: Any) -> bool:
    """A tensor or a flat tuple/list of tensors: what every exporter and runtime takes as it is."""
    if isinstance(outputs, (tuple, list)) and keyed_items(outputs) is None:
        return all(isinstance(item, torch.Tensor) for item in outputs)
    return isinstance(outputs, torch.Tensor)


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor as a numpy array on the host; reduced-precision floats come back as float32."""
    tensor = tensor.detach()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def named_outputs(model: ModelSpec, outputs: Any) -> dict[str, np.ndarray]:
    return {name: to_numpy(tensor) for name, tensor in bind_outputs(model, outputs)}


def example_batch(model: ModelSpec, samples: Sequence[Mapping[str, np.ndarray]],
                  max_batch_size: int) -> dict[str, np.ndarray]:
    """A sample to trace or export with: batch 2 where the batch is dynamic.

    Exporters specialise a batch of 1 into a constant (torch.export's 0/1 specialisation; the
    TorchScript tracer can bake it into reshapes), so a batch-1 sample is tiled to 2. Deterministic:
    the first sample with batch >= 2, else the first sample tiled.
    """
    if not samples:
        raise ValueError(f"model {model.name}: no samples to export with")
    axis = model.batch_dim
    if max_batch_size < 2:
        return dict(samples[0])
    for sample in samples:
        batch = next(iter(sample.values())).shape[axis]
        if 2 <= batch <= max_batch_size:
            return dict(sample)
    return {name: np.concatenate([array, array], axis=axis)[_first(2, axis, array.ndim)]
            for name, array in samples[0].items()}


def training_modules(model: Any) -> list[str]:
    """Kinds of the modules in training mode (``Dropout``, ``BatchNorm2d``...) that ``eval()`` changes."""
    if not isinstance(model, torch.nn.Module):
        return []
    return sorted({type(module).__name__ for module in model.modules() if module.training
                   and not list(module.children())})


def prepare_model(model: Any, device: str, dtype: Any = None) -> Any:
    """The live model in eval mode on ``device``, weights cast to ``dtype`` if given."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model entry returned {type(model).__name__}, not a torch.nn.Module")
    model = model.eval().to(device)
    return model.to(dtype) if dtype is not None else model


def is_quantized(model: Any) -> bool:
    """Whether the module holds quantized parts: a submodule of a quantization package (torch.ao's
    quantized and fake-quantized modules, NVIDIA ModelOpt's quantizers) or a quantized tensor."""
    for module in model.modules():
        if "quantiz" in type(module).__module__:
            return True
        if any(getattr(t, "is_quantized", False) for t in (*module.parameters(False), *module.buffers(False))):
            return True
    return False


def _first(count: int, axis: int, ndim: int) -> tuple[slice, ...]:
    return tuple(slice(0, count) if dim == axis else slice(None) for dim in range(ndim))
