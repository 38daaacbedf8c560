"""Rule plug-ins for the tests, registered as a third party's would be: through the ``navbuild.rules``
entry point of an installed distribution (``install`` writes its metadata)."""
from __future__ import annotations

from pathlib import Path

DIST = "navbuild_test_plugins-0.dist-info"


def install(folder: Path) -> Path:
    """A distribution declaring ``tests.plugins.toy_rules`` under ``folder``; put ``folder`` on the
    import path (PYTHONPATH) of a navbuild process to register it."""
    dist = Path(folder) / DIST
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: navbuild-test-plugins\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[navbuild.rules]\ntoy = tests.plugins.toy_rules\n")
    return Path(folder)


TOY_MODEL = '''import numpy as np


def model():
    return {{"factor": {factor}}}


def samples():
    return [np.full((1, 4), {index}, dtype=np.float32), np.ones((2, 4), dtype=np.float32)]
'''


def synthetic_project(root: Path, models: int) -> Path:
    """``models`` toy models, each with its own source file and 10 targets (samples, reference, four
    artifacts and their checks); returns the config's path."""
    from tests.plugins.toy_rules import FORMATS

    (root / "models").mkdir(parents=True, exist_ok=True)
    lines = ['[project]\nname = "scale"\n\n[profile]\nenabled = false\n']
    for index in range(models):
        (root / "models" / f"m{index}.py").write_text(TOY_MODEL.format(factor=1.0 + index / 10, index=index))
        lines.append(f'[models.m{index}]\nframework = "toy"\nentry = "models/m{index}.py:model"\n'
                     f'samples = "models/m{index}.py:samples"\ninputs = ["x"]\noutputs = ["y"]\nmax_batch_size = 2\n'
                     f'[models.m{index}.targets]\nformats = {list(FORMATS)!r}\n'.replace("'", '"'))
    (root / "navbuild.toml").write_text("\n".join(lines))
    return root / "navbuild.toml"
