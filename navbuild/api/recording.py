"""What a wrapped module saw while ``navbuild.optimize`` ran the pipeline: its calls and outputs.

The first ``limit`` calls are kept (on the host): the module's targets are exported and checked with
them, and their range (dtypes, every dimension) is what the optimized module serves afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from navbuild.api import calls


STRUCTURE_DIFFERS = "its arguments differ from the recorded calls' in structure or constants"
VERDICTS_KEPT = 256  # call signatures whose verdict is remembered


@dataclass
class Recording:
    """What the pipeline passed to one module and got back, while ``optimize`` ran it."""

    limit: int
    call: calls.Call | None = None
    samples: list[tuple[tuple, dict]] = field(default_factory=list)  # the first ``limit`` calls, on the host
    reference: Any = None  # the output of the first kept call
    calls_seen: int = 0
    other_signatures: int = 0  # calls whose structure differed from the first (not optimized)
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # input -> (min, max) per axis
    dtypes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why a call could not be recorded
    _verdicts: dict[Any, str | None] = field(default_factory=dict, repr=False)  # signature -> refusal

    def add(self, args: tuple, kwargs: dict, output: Any) -> None:
        self.calls_seen += 1
        try:
            call, leaves = calls.record(args, kwargs)
        except calls.CallError as exc:  # the pipeline goes on; the module is not optimized
            self.error = self.error or str(exc)
            return
        if self.call is None:
            self.call, self.reference = call, detached(output)
        elif not call.same_structure(self.call):
            self.other_signatures += 1
            return
        if len(self.samples) >= self.limit:
            return
        # the kept calls are what the targets are exported and checked with: their range is what
        # an optimized module serves (an axis that varies among them is a dynamic axis)
        self.samples.append(detached((tuple(args), dict(kwargs))))
        self._verdicts.clear()  # the ranges grow
        for name, leaf in zip(self.call.names, leaves):
            self.dtypes.setdefault(name, leaf.dtype)
            shape = list(leaf.shape)
            known = self.ranges.setdefault(name, [(n, n) for n in shape])
            if len(known) == len(shape):
                self.ranges[name] = [(min(lo, n), max(hi, n)) for (lo, hi), n in zip(known, shape)]

    def admits(self, call: calls.Call, leaves: list[Any]) -> bool:
        """A later call the optimized runner may serve: same structure, dtypes, shapes in range."""
        return self.refusal(call, leaves) is None

    def refusal(self, call: calls.Call, leaves: list[Any]) -> str | None:
        """Why the optimized runner may not serve a later call (None: it may), in one phrase."""
        if self.call is None:
            return "no call was recorded"
        if not call.same_structure(self.call):
            return STRUCTURE_DIFFERS
        return self.leaves_refusal(leaves)

    def leaves_refusal(self, leaves: list[Any]) -> str | None:
        """Why the tensors of a call of the recorded structure may not be served (None: they may):
        a dtype, or a size outside the recorded range. Kept per signature (dtypes and shapes), so a
        pipeline's thousandth call of one shape pays a look-up."""
        key = tuple((leaf.dtype, leaf.shape) for leaf in leaves)
        if key not in self._verdicts:
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[key] = self._leaves_refusal(leaves)
        return self._verdicts[key]

    def _leaves_refusal(self, leaves: list[Any]) -> str | None:
        if self.call is None:
            return "no call was recorded"
        for name, leaf in zip(self.call.names, leaves):
            ranges = self.ranges.get(name)
            if leaf.dtype != self.dtypes.get(name):
                return f"input {name} is {leaf.dtype}, the recorded calls' {self.dtypes.get(name)}"
            if ranges is None or leaf.dim() != len(ranges):
                return f"input {name} has {leaf.dim()} dimensions, the recorded calls' {len(ranges or ())}"
            for axis, (n, (lo, hi)) in enumerate(zip(leaf.shape, ranges)):
                if not lo <= n <= hi:
                    what = "batch" if axis == 0 else f"axis {axis}"
                    return f"input {name} has {what} {n}, outside the recorded range {lo}..{hi}"
        return None


def detached(value: Any) -> Any:
    """Tensors copied to the host and cut from autograd, anything else as it is."""
    if calls.is_tensor(value):
        return value.detach().cpu().clone()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(detached(v) for v in value)
    if isinstance(value, list):
        return [detached(v) for v in value]
    if isinstance(value, dict) and type(value) is dict:
        return {k: detached(v) for k, v in value.items()}
    return value
