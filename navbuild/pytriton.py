"""``navbuild.pytriton.PyTritonAdapter(package=, strategy=)``: serve an optimized model with PyTriton,
as Model Navigator's adapter does (``.runner``, ``.inputs``, ``.outputs``, ``.config``, plus a ready
``.infer_func``). ``package`` is what ``navbuild.torch.optimize`` returns or ``navbuild.package.load``
reads, the CLI's build status (then ``model_name=`` picks the model when it holds several), or a
``.nav`` path. The work is ``navbuild.deploy.pytriton_adapter``'s; see docs/deploy.md."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.deploy.pytriton_adapter import PyTritonAdapter as _StatusAdapter

__all__ = ["PyTritonAdapter"]


class PyTritonAdapter(_StatusAdapter):
    """The runner (not activated: call ``runner.activate()``), tensors and config of the target that
    ``strategy`` selects (max-throughput by default; a strategy object or its name), or of ``target``."""

    def __init__(self, package: Any, strategy: Any = None, *, model_name: str | None = None,
                 target: str | None = None, device: str | None = None, workdir: Path | None = None) -> None:
        from navbuild.api.deployment import resolve

        chosen = resolve(package, strategy, model_name=model_name, target=target)
        super().__init__(chosen.status, chosen.model_name, strategy=chosen.strategy, target=chosen.target,
                         device=device, workdir=workdir, source_root=chosen.root)
