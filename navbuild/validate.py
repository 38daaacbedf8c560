"""Small checks of configuration values, each raising ``Invalid`` with the problem and its fix.

The readers of navbuild.toml call them where a value is parsed: ``engine/config.py`` turns
``Invalid`` into a ConfigError naming the file and the key, ``measure/settings.py`` (which imports
nothing of the engine, hence this module's place beside both) into a SettingsError naming the
profile option. They refuse what navbuild could not
honour later: a NaN tolerance passes every comparison, an integer past 64 bits cannot be encoded
in a key, a name longer than a file name cannot name the package.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Iterable, Mapping

MAX_INT = 2**31 - 1  # batch sizes and counts: Triton and TensorRT hold them in 32 bits
MAX_SECONDS = 7 * 24 * 3600.0  # a timeout or a budget of more than a week is a typo
MAX_NAME_BYTES = 128  # names become file names: <name>.profile.json must fit 255 bytes
MAX_DEPTH = 32  # tables and lists inside each other (the deepest navbuild.toml needs is 5)
ED25519_PREFIX = "ed25519:"  # a public key as [trust] keys lists it and `navbuild package --sign` prints it


class Invalid(ValueError):
    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


def finite(value: float, lo: float = -math.inf, hi: float = math.inf, what: str = "a number") -> float:
    """A finite number within ``[lo, hi]`` (NaN and infinities refused: no comparison holds for NaN)."""
    if not math.isfinite(value):
        raise Invalid(f"must be {what}, not {value}", "give a finite number")
    if not lo <= value <= hi:
        raise Invalid(f"must be {what} from {lo:g} to {hi:g}, not {value:g}", f"use a value from {lo:g} to {hi:g}")
    return value


def seconds(value: float, allow_zero: bool = False) -> float:
    """A positive, finite number of seconds, at most a week (0 too when ``allow_zero``)."""
    if math.isfinite(value) and (value > 0 or (allow_zero and value == 0)) and value <= MAX_SECONDS:
        return value
    span = f"from 0 to {MAX_SECONDS:g}" if allow_zero else f"above 0 and at most {MAX_SECONDS:g}"
    raise Invalid(f"must be a number of seconds {span} (a week), not {_short(value)}", "e.g. 600")


def int_in(value: int, lo: int, hi: int) -> int:
    """An integer within ``[lo, hi]``."""
    if not lo <= value <= hi:
        raise Invalid(f"must be from {lo} to {hi}, not {_short(value)}", f"use an integer from {lo} to {hi}")
    return value


def file_name(text: str) -> str:
    """A name that fits in a file name with navbuild's suffixes."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise Invalid(f"is {size} bytes long, more than the {MAX_NAME_BYTES} a name may have (it names files)",
                      "use a shorter name")
    return text


def no_duplicates(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise Invalid(f"lists {value!r} twice", "list each value once")
        seen.append(value)
    return seen


def not_empty(values: list[Any], example: str) -> list[Any]:
    if not values:
        raise Invalid("is empty", f"list at least one, e.g. {example}")
    return values


def nesting(value: Any, limit: int = MAX_DEPTH) -> None:
    """Tables and lists nested at most ``limit`` deep (keys, digests and msgpack recurse into them)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any] = ()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise Invalid(f"nests tables or lists more than {limit} deep", "flatten the value")
        stack.extend((child, depth + 1) for child in children)


def ed25519_public_key(text: Any) -> str:
    """A public key of the form ``ed25519:<base64 of 32 bytes>`` (deploy/signing.py verifies with it)."""
    fix = "paste the line `navbuild package --sign KEY` prints: ed25519: and the public key in base64"
    if not isinstance(text, str) or not text.startswith(ED25519_PREFIX):
        raise Invalid(f"{str(text)[:60]!r} is not a key of the form ed25519:<base64>", fix)
    try:
        raw = base64.b64decode(text[len(ED25519_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{text[:60]!r} is not base64 after ed25519:", fix) from None
    if len(raw) != 32:
        raise Invalid(f"{text[:60]!r} holds {len(raw)} bytes, an Ed25519 public key 32", fix)
    return text


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
