"""Where everything navbuild prints for people goes: a rich console on stdout or stderr."""
from __future__ import annotations

from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = Console(stderr=stderr, highlight=False)
    if not stream.is_terminal:  # logs and CI: tables wide enough that target names are not folded, and
        # a line is never broken (a command in a message stays whole, for whoever copies it)
        stream = Console(stderr=stderr, highlight=False, width=max(stream.width, 160), soft_wrap=True)
    return stream
