"""A build step in a fresh Python process, for byte-reproducible TensorFlow outputs.

A SavedModel and tf2onnx's ONNX carry names that count what the process built before (Keras layer
names, TensorFlow function ids, tf2onnx's node counter): the same model saved twice in one process
gives two different files. In a fresh process with a fixed hash seed the same inputs give the same
bytes, so the cache and early cutoff work. ``run_in_child(ctx, "module:function")`` calls
``function(ctx)`` there with an equivalent BuildContext and returns its metadata; a ``Skip`` or an
error there is raised here with its message, and the child's output goes to the build log.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from navbuild.rule import BuildContext, ModelSpec, Skip

RESULT_FILE = "result.json"
TIMEOUT_S = 1800


class ChildError(RuntimeError):
    """The step failed in the child process; the message is the child's own."""


def run_in_child(ctx: BuildContext, function: str) -> dict[str, Any]:
    from navbuild import tensors

    job_dir = ctx.workdir / "child"
    job_dir.mkdir(parents=True, exist_ok=True)
    tensors.save(job_dir / "samples.tensors", ctx.samples)
    job = {"function": function, "model": _model_dict(ctx.model), "target": ctx.target,
           "precision": ctx.precision, "device": ctx.device, "params": dict(ctx.params),
           "engine_values": dict(ctx.engine_values),
           "out_dir": str(ctx.out_dir), "input_dir": str(ctx.input_dir) if ctx.input_dir else None,
           "workdir": str(job_dir / "work"), "cache_dir": str(ctx.cache_dir) if ctx.cache_dir else None,
           "samples": str(job_dir / "samples.tensors"), "result": str(job_dir / RESULT_FILE)}
    (job_dir / "job.json").write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-m", "navbuild_rules.tensorflow.worker", str(job_dir / "job.json")],
                          capture_output=True, text=True, env=_child_env(), timeout=TIMEOUT_S)
    if done.stdout.strip() or done.stderr.strip():
        ctx.log(f"{function} in a child process:\n{done.stdout}{done.stderr}")
    result_path = job_dir / RESULT_FILE
    if not result_path.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ChildError(f"the child process building {ctx.target} exited with {done.returncode} and no result: "
                         + " | ".join(tail))
    result = json.loads(result_path.read_text())
    if result["kind"] == "skip":
        raise Skip(result["message"])
    if result["kind"] == "error":
        raise ChildError(result["message"])
    return result["metadata"]


def _model_dict(model: ModelSpec) -> dict[str, Any]:
    return {"name": model.name, "framework": model.framework, "entry": model.entry, "root": str(model.root),
            "inputs": list(model.inputs), "outputs": list(model.outputs), "batch_dim": model.batch_dim,
            "max_batch_size": model.max_batch_size,
            "dynamic_axes": {name: {str(axis): dim for axis, dim in axes.items()}
                             for name, axes in model.dynamic_axes.items()},
            "options": dict(model.options)}


def _child_env() -> dict[str, str]:
    """This process's environment, a fixed hash seed, quieter TensorFlow, and the folders that hold
    navbuild and the rules first on the path."""
    import navbuild
    import navbuild_rules

    roots = [str(Path(module.__file__).resolve().parents[1]) for module in (navbuild_rules, navbuild)]
    path = [*dict.fromkeys(roots), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(path)}


def _context(job: dict[str, Any]) -> BuildContext:
    from navbuild import tensors

    model = dict(job["model"])
    model["root"] = Path(model["root"])
    model["inputs"], model["outputs"] = tuple(model["inputs"]), tuple(model["outputs"])
    model["dynamic_axes"] = {name: {int(axis): dim for axis, dim in axes.items()}
                             for name, axes in model["dynamic_axes"].items()}
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    return BuildContext(model=ModelSpec(**model), target=job["target"], precision=job["precision"],
                        device=job["device"], params=job["params"], out_dir=Path(job["out_dir"]),
                        input_dir=Path(job["input_dir"]) if job["input_dir"] else None,
                        samples=tensors.load(job["samples"]), log=lambda message: print(message, flush=True),
                        workdir=workdir, cache_dir=Path(job["cache_dir"]) if job["cache_dir"] else None,
                        engine_values=job["engine_values"])


def main(job_file: str) -> int:
    job = json.loads(Path(job_file).read_text())
    module_name, _, function_name = job["function"].partition(":")
    try:
        metadata = getattr(importlib.import_module(module_name), function_name)(_context(job))
        result = {"kind": "ok", "metadata": metadata or {}}
    except Skip as skip:
        result = {"kind": "skip", "message": str(skip)}
    except Exception as exc:  # the parent raises it with this message; the traceback goes to the log
        traceback.print_exc()
        result = {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}
    Path(job["result"]).write_text(json.dumps(result, default=str))
    return 0 if result["kind"] != "error" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
