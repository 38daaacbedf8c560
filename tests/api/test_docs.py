"""docs/python-api.md runs: its python blocks, in order, as one module imported from a folder that
holds a copy of examples/ (a worker process imports that module, never a script's main)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.api.conftest import REPO

PAGE = REPO / "docs" / "python-api.md"


def test_the_python_api_page_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 8
    (tmp_path / "doc_examples.py").write_text("\n\n".join(blocks))
    for name in ("vision", "pipeline"):
        shutil.copytree(REPO / "examples" / name, tmp_path / "examples" / name,
                        ignore=shutil.ignore_patterns("__pycache__", "workspace"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", "import doc_examples"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "target_formats: unknown format 'onix'" in result.stdout
    assert not list((tmp_path / ".navbuild-api").glob("*/model-*.pt"))  # worker pickles are removed
