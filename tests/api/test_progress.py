"""Issue 24, item 1, through the Python API: an optimize shows what runs now as the CLI does; in a
log (stderr not a terminal) a target that runs long says so in "still ..." lines."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.api.conftest import REPO

GUARDED = """
    import sys
    sys.path.insert(0, "vision")
    import navbuild
    import model

    if __name__ == "__main__":
        config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu",
                                         profiling=False, workspace=".")
        navbuild.torch.optimize(model.build_model(), model.make_samples(), config)
"""


def test_an_optimize_in_a_log_says_what_still_runs(vision):
    script = vision / "_script.py"
    script.write_text(textwrap.dedent(GUARDED))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "NAVBUILD_PROGRESS_EVERY": "0.5"}
    result = subprocess.run([sys.executable, str(script)], cwd=vision, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    still = [line for line in result.stderr.splitlines() if line.startswith("still ")]
    # a worker process starts and the model is exported: seconds, said every half second
    assert any(" smallresnet:" in line and line.endswith(" s") for line in still), result.stderr[-3000:]
    assert "built    smallresnet:" not in result.stderr  # the finished lines are the API's own table's
