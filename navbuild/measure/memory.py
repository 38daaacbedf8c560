"""Out of memory: recognised in any framework's error (duck-typed), and what can be freed after it.
An out-of-memory error ends a profile's batch loop cleanly; it is data, not a failure.
"""
from __future__ import annotations

import gc
import sys

_OOM_TYPES = ("outofmemory", "resourceexhausted", "memoryerror")
_OOM_TEXT = ("out of memory", "oom when allocating", "failed to allocate memory",
             "cudaerrormemoryallocation", "cuda_error_out_of_memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Duck-typed: the exception (or its cause/context) is a framework's out-of-memory error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(word in type(current).__name__.lower() for word in _OOM_TYPES):
            return True
        text = str(current).lower()
        if any(phrase in text for phrase in _OOM_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception:  # freeing memory is best effort
            pass
