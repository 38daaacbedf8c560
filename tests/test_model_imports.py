"""Issue 24, item 4: ``navbuild list`` reads what a model's own code imports (engine/imports.py)
before it says a target can be built here: the entry file, the project modules it imports, never
an import the code guards; nothing is run or imported."""
from __future__ import annotations

import sys
import textwrap

from navbuild.cli import main
from navbuild.engine.imports import imported_names, missing_modules
from tests.e2e.tiny import MODEL, make_tiny_project

ABSENT = "navbuild_test_absent_module"  # a module no machine has


def test_project_modules_are_followed_and_guarded_imports_are_not_asked_for(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "__init__.py").write_text("")
    (tmp_path / "nets" / "blocks.py").write_text(f"import numpy\n\n\ndef block():\n    import {ABSENT}.layers\n")
    (tmp_path / "nets" / "heads.py").write_text("from . import blocks\n")
    (tmp_path / "model.py").write_text(textwrap.dedent(f"""
        import os
        from typing import TYPE_CHECKING
        from nets.heads import blocks
        try:
            import {ABSENT}_fast
        except ImportError:
            pass
        if TYPE_CHECKING:
            import {ABSENT}_types
    """))
    assert missing_modules(tmp_path, [tmp_path / "model.py"]) == [ABSENT]  # found two imports away
    assert (1, "blocks") in imported_names(tmp_path / "nets" / "heads.py")
    assert ABSENT not in sys.modules and "nets" not in sys.modules  # read, never imported


def test_list_says_a_model_whose_code_imports_what_is_not_installed_cannot_be_built_here(tmp_path, capsys):
    project = make_tiny_project(tmp_path / "project", precisions='["fp32"]')
    (project.root / "model.py").write_text(MODEL.replace("import torch\n", f"import torch\nimport {ABSENT}\n", 1))
    assert main(["--config", str(project.config), "list"]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[6].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert rows["mlp:onnx"] == f"no: its code imports {ABSENT}, which is not installed", rows
    (project.root / "model.py").write_text(MODEL)
    assert main(["--config", str(project.config), "list"]) == 0
    rows = {line.split("│")[1].strip(): line.split("│")[6].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert rows["mlp:onnx"] == "yes"
