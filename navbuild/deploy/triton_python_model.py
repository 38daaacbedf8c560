"""Triton python-backend model that serves a navbuild target through its navbuild runner.

navbuild's Triton writer copies this file as ``<model>/1/model.py`` beside ``navbuild_model.json``
(the model's inputs/outputs, runner, precision and device), ``artifact/`` (the target's files) and,
for targets that run the model's source (torch eager), ``source/``. The Python that Triton's python
backend runs must be able to import ``navbuild`` and the runner's framework.

Imports of Triton and navbuild sit inside the methods, so this file also imports outside Triton.
"""
from __future__ import annotations

import json
from pathlib import Path

SPEC_FILE = "navbuild_model.json"


class TritonPythonModel:
    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        from navbuild.deploy.triton_config import io_names
        from navbuild.deploy.triton_repo import make_runner

        self._pb = pb_utils
        here = Path(__file__).resolve().parent
        self.spec = json.loads((here / SPEC_FILE).read_text())
        config = json.loads(args["model_config"])
        model = self.spec["model"]
        self.batching = int(config.get("max_batch_size") or 0) > 0
        self.inputs, self.outputs = io_names(model)
        self.output_dtypes = {
            triton: pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(config, triton)["data_type"])
            for _, triton in self.outputs}
        device = self.spec.get("device") or "cpu"
        if args.get("model_instance_kind") == "CPU":
            device = "cpu"
        elif args.get("model_instance_kind") == "GPU" and not device.startswith("cuda"):
            device = "cuda"
        artifact = here / self.spec["artifact"] if self.spec.get("artifact") else None
        root = here / self.spec["source"] if self.spec.get("source") else here
        self.runner = make_runner(self.spec, artifact_dir=artifact, root=root, device=device)
        self.runner.activate()

    def execute(self, requests):
        import numpy as np

        pb = self._pb
        feeds, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            feed = {}
            for name, triton in self.inputs:
                tensor = pb.get_input_tensor_by_name(request, triton)
                if tensor is None:
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"input {triton} is missing"))
                    break
                feed[name] = tensor.as_numpy()
            else:
                feeds.append((i, feed))

        for indices, outputs in self._run(feeds):
            for i, result in zip(indices, outputs):
                if isinstance(result, Exception):
                    responses[i] = pb.InferenceResponse(error=pb.TritonError(f"{type(result).__name__}: {result}"))
                    continue
                tensors = []
                for name, triton in self.outputs:
                    value = np.ascontiguousarray(np.asarray(result[name], dtype=self.output_dtypes[triton]))
                    tensors.append(pb.Tensor(triton, value))
                responses[i] = pb.InferenceResponse(output_tensors=tensors)
        return responses

    def _run(self, feeds):
        """Yield ``(request indices, per-request outputs or exceptions)``.

        With batching, requests whose items have the same shape run as one batch, split back by
        each request's batch size.
        """
        import numpy as np

        groups = {}
        for i, feed in feeds:
            key = (tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in sorted(feed.items()))
                   if self.batching else (i,))
            groups.setdefault(key, []).append((i, feed))
        for group in groups.values():
            indices = [i for i, _ in group]
            try:
                if len(group) == 1:
                    yield indices, [self.runner.infer(group[0][1])]
                    continue
                sizes = [len(next(iter(feed.values()))) for _, feed in group]
                joined = {name: np.concatenate([feed[name] for _, feed in group]) for name in group[0][1]}
                out = self.runner.infer(joined)
                bounds = np.cumsum([0] + sizes)
                yield indices, [{name: value[bounds[k]:bounds[k + 1]] for name, value in out.items()}
                                for k in range(len(group))]
            except Exception as exc:  # reported to each request of the group
                yield indices, [exc] * len(group)

    def finalize(self):
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.deactivate()
