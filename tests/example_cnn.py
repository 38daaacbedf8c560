"""The example CNN (examples/vision) as the tests declare it: one ``[models.cnn]`` table and one way
to put the model's files into a project, for every test that builds or configures it (tests/e2e,
tests/api, the config and variant tests). A test changes what it is about through the arguments
(formats, profile, the tables around it), or by replacing a line of the text it gets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
VISION = REPO / "examples" / "vision"
FORMATS = ("torchscript-trace", "onnx")
NO_PROFILE = "[profile]\nenabled = false"


def cnn_table(formats: Sequence[str] | str = FORMATS, *, max_batch_size: int = 16, outputs: bool = True,
              targets: str = "") -> str:
    """``[models.cnn]`` and its ``[models.cnn.targets]``; ``formats`` a list, or its TOML text;
    ``targets``: more lines of the targets table (precisions, options)."""
    formats_text = formats if isinstance(formats, str) else json.dumps(list(formats))
    lines = ["[models.cnn]", 'framework = "torch"', 'entry = "vision/model.py:build_model"',
             'samples = "vision/model.py:make_samples"', 'sources = ["vision/model.py", "vision/weights.pt"]',
             'inputs = ["image"]', *(['outputs = ["logits"]'] if outputs else []),
             f"max_batch_size = {max_batch_size}", "", "[models.cnn.targets]", f"formats = {formats_text}",
             *([targets] if targets else [])]
    return "\n".join(lines) + "\n"


def cnn_config(name: str, *, project: str = "", profile: str = NO_PROFILE, before: str = "", after: str = "",
               **table) -> str:
    """A navbuild.toml holding the CNN: ``[project]`` (``name`` and more ``project`` lines), then
    ``profile``, ``before`` (other top-level tables), the CNN (``cnn_table(**table)``), ``after``
    (more models, ``[cache]``). An empty part is left out."""
    head = f'[project]\nname = "{name}"' + (f"\n{project}" if project else "")
    parts = [head, profile, before, cnn_table(**table), after]
    return "\n" + "\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n"


def copy_vision(root: Path) -> Path:
    """``examples/vision`` into ``root/vision``, the folder the table names; returns ``root``."""
    shutil.copytree(VISION, root / "vision", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "navbuild-out", ".navbuild"))
    return root


def cnn_project(root: Path, name: str, **config) -> Path:
    """A project of the CNN alone at ``root``: its files and navbuild.toml (``cnn_config``); returns
    the config's path."""
    copy_vision(root)
    path = root / "navbuild.toml"
    path.write_text(cnn_config(name, **config))
    return path
