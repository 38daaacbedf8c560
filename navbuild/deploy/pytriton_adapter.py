"""Serve a built target with PyTriton: the runner, tensors, config and inference function to bind.

    adapter = PyTritonAdapter(status_or_package, "cnn", strategy="max-throughput")
    with Triton() as triton:
        triton.bind(model_name="cnn", infer_func=adapter.infer_func, inputs=adapter.inputs,
                    outputs=adapter.outputs, config=adapter.config)
        triton.serve()

pytriton is imported when the adapter is built, never at module import time.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from navbuild.deploy import triton_config
from navbuild.deploy.triton_repo import (DeployError, deployed_target, make_runner, model_status, needs_source,
                                  project_root, runner_spec)


class PyTritonAdapter:
    """What PyTriton needs to serve one model's selected (or given) target in this process.

    status_or_package  a build status dict, a ``PackageContents`` or the path of a ``.nav`` package
                       (extracted into ``workdir``, a temporary folder by default, removed by close())
    device             overrides the target's device (``cpu``, ``cuda``)
    source_root        project root, for runners that load the model's code (default: status["root"])
    """

    def __init__(self, status_or_package: Any, model_name: str, *, strategy: str = "max-throughput",
                 target: str | None = None, device: str | None = None, workdir: Path | None = None,
                 source_root: Path | None = None) -> None:
        self._tmp: Path | None = None
        try:
            self._setup(status_or_package, model_name, strategy, target, device, workdir, source_root)
        except BaseException:
            self.close()
            raise

    def _setup(self, status_or_package: Any, model_name: str, strategy: str, target: str | None,
               device: str | None, workdir: Path | None, source_root: Path | None) -> None:
        from navbuild.deploy.package import PackageContents, read_package, scan_artifacts

        self.runner = None
        if isinstance(status_or_package, (str, Path)):
            status_or_package = read_package(Path(status_or_package))
        if isinstance(status_or_package, PackageContents):
            if workdir is None:
                self._tmp = workdir = Path(tempfile.mkdtemp(prefix="navbuild-pytriton-"))
            status = status_or_package.extract(workdir)
            scan_artifacts(status, status_or_package.path)  # read as data before a runner loads them
        else:
            status = status_or_package
        self.status: Mapping[str, Any] = status
        self.model_name = model_name
        self.target_name, self.target = deployed_target(status, model_name, target=target, strategy=strategy)
        self.model = model_status(status, model_name)
        files = self.target.get("files") or {}
        label = f"{model_name}:{self.target_name}"
        if files and not Path(str(self.target.get("dir"))).is_absolute():
            raise DeployError(f"{label}: the status has no absolute 'dir' for its files")
        root = project_root(status, source_root)
        needs_source(self.target, label, root)
        self.spec = runner_spec(status, model_name, self.target_name)
        self.runner = make_runner(self.spec, artifact_dir=Path(self.target["dir"]) if files else None,
                                  root=root, device=device)
        self.batching = triton_config.batching_enabled(self.model)
        self.max_batch_size = int(self.model.get("max_batch_size") or 0) if self.batching else 0
        self._lock = threading.Lock()
        self.infer_func = self._make_infer_func()

    # -- what Triton.bind takes -------------------------------------------------------------
    def _tensors(self, specs: Any) -> list[Any]:
        import numpy as np
        from pytriton.model_config import Tensor

        tensors = []
        for spec in specs or ():
            dims, _ = triton_config.tensor_dims(spec["shape"], self.batching)
            tensors.append(Tensor(name=spec["name"], dtype=np.dtype(spec["dtype"]), shape=tuple(dims)))
        return tensors

    @property
    def inputs(self) -> list[Any]:
        return self._tensors(self.model.get("inputs"))

    @property
    def outputs(self) -> list[Any]:
        return self._tensors(self.model.get("outputs"))

    @property
    def config(self) -> Any:
        from pytriton.model_config import DynamicBatcher, ModelConfig

        preferred = triton_config.preferred_batch_sizes(self.target.get("profile"), self.max_batch_size)
        batcher = DynamicBatcher(preferred_batch_size=preferred or None)
        return ModelConfig(batching=self.batching, max_batch_size=self.max_batch_size, batcher=batcher)

    def _make_infer_func(self) -> Any:
        import numpy as np
        from pytriton.decorators import batch

        runner = self.runner
        specs_in, specs_out = self.model.get("inputs") or (), self.model.get("outputs") or ()
        dtypes = {spec["name"]: np.dtype(spec["dtype"]) for spec in specs_out}
        # one scalar per batch item travels as [batch, 1] (Triton's dims [1]); the model sees [batch]
        scalar = {spec["name"] for spec in (*specs_in, *specs_out)
                  if self.batching and len(spec["shape"]) == 1}

        @batch
        def infer_func(**inputs: Any) -> dict[str, Any]:
            feed = {spec["name"]: inputs[spec["name"]] for spec in specs_in}
            feed = {name: value.reshape(-1) if name in scalar else value for name, value in feed.items()}
            with self._lock:
                runner.activate()  # once; later calls return at once
                outputs = runner.infer(feed)
            result = {name: np.asarray(outputs[name], dtype=dtype) for name, dtype in dtypes.items()}
            return {name: value.reshape(-1, 1) if name in scalar else value for name, value in result.items()}

        return infer_func

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "runner", None) is not None:
            self.runner.deactivate()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "PyTritonAdapter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
