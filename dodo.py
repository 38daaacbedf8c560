"""Plain ``doit`` on navbuild's graph: ``doit list``, ``doit cnn:onnx``, ``doit all``.

The tasks are navbuild's targets (navbuild.engine.doit_glue): doit orders them, the store decides
what is up to date, and each task's action builds its target through navbuild's own scheduler, so
doit and navbuild never disagree, neither rebuilds what the other built, and both write navbuild.lock.
"""
from pathlib import Path

from navbuild.engine import doit_glue
from navbuild.engine.project import open_project

DOIT_CONFIG = {
    "default_tasks": ["all"],
    "verbosity": 2,
    "continue": True,
    # navbuild's store is the source of truth; doit's own database stays in memory
    # (the backend is registered in pyproject.toml's [tool.doit.plugins.backend]).
    "backend": "navbuild-null",
    "dep_file": str(Path(__file__).with_name(".navbuild") / "doit-null"),
}


def task_navbuild():
    """navbuild targets"""
    yield from doit_glue.task_dicts(open_project(Path(__file__).with_name("navbuild.toml")))
