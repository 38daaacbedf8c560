"""``navbuild.triton``: Triton Inference Server deployment under Model Navigator's names
(``navbuild.triton.model_repository.add_model_from_package``)."""
from __future__ import annotations

from navbuild.triton import model_repository

__all__ = ["model_repository"]
