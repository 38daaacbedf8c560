"""One module per command of the CLI."""
from __future__ import annotations

from typing import Any


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)
