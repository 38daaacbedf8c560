"""Fixtures shared by the test folders."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def stable_diffusion_build(tmp_path_factory) -> tuple[Path, dict]:
    """examples/stable_diffusion's first run (the reference page's optimize, every default) in a
    workspace of its own, once per session: ``(workspace, the run's JSON summary)``. The example's
    test goes on from it; the page's snippet test runs the same page code there again."""
    pytest.importorskip("diffusers", reason="the diffusers extra is not installed")
    from tests.stable_diffusion import run_example

    workspace = tmp_path_factory.mktemp("stable_diffusion") / "workspace"
    return workspace, run_example(workspace)
