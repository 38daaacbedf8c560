"""``navbuild triton --verify``: the repository just written, served by a real tritonserver on
loopback, must answer as the source model does.

Each deployed model gets the stored samples and, when it declares dynamic axes, one more request
whose sizes no sample had (``navbuild.dynamic_axes.unseen_length``); its expected outputs come from
the model's reference rule run on that input, here. Outputs are compared with the check's
tolerances. A model the server did not load (a backend it lacks) fails by name, with the server's
reason; the others are still verified. The server is stopped whatever happens.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from navbuild import dynamic_axes
from navbuild.deploy import triton_config, triton_server
from navbuild.rule import ROLE_REFERENCE, TritonModel

if TYPE_CHECKING:
    import numpy as np

    from navbuild.engine.session import Session

REQUEST_TIMEOUT_S = 120.0


@dataclass
class Deployed:
    """One model folder of the repository: which model and target it serves, and how."""

    triton_name: str
    model: str
    target: str
    serving: TritonModel


@dataclass
class Case:
    """One request: the inputs, the outputs expected, and what it is (``sample 0``, ``seq = 10``)."""

    label: str
    inputs: dict[str, Any]
    expected: dict[str, Any]


@dataclass
class Verdict:
    deployed: Deployed
    passed: bool
    lines: list[str] = field(default_factory=list)


def missing_backend(install: triton_server.Install | None, serving: TritonModel) -> str | None:
    """Why this server would not load a model served by ``serving`` (its backend folder lacks the
    backend), or None (it has it, or no server was found to ask)."""
    if install is None:
        return None
    found = triton_server.backends(install)
    if serving.backend in found or (install.bundled and serving.backend == triton_config.PYTHON.backend):
        return None
    return (f"{install.label} has no {serving.backend} backend (only {', '.join(sorted(found)) or 'none'}) and will "
            f"not load it; serve it with --backend python, or with a Triton that has that backend")


def unseen_case(session: Session, model_name: str, samples: list[dict[str, Any]]) -> Case | None:
    """The first sample with every dynamic axis at a size no sample had, and the source model's
    outputs on it (its reference rule, run here); None without dynamic axes or room for a new size."""
    from navbuild import tensors
    from navbuild.rule import BuildContext

    spec = session.project.models[model_name].spec
    seen = dynamic_axes.sizes(spec.dynamic_axes, samples)
    sample, chosen = dict(samples[0]), {}
    for label, span in dynamic_axes.spec_ranges(spec, samples).items():
        size = dynamic_axes.unseen_length(span, seen[label])
        if size is not None:
            sample, chosen[label] = dynamic_axes.resized(sample, spec.dynamic_axes, label, size), size
    if not chosen:
        return None
    rule = session.registry.role(ROLE_REFERENCE, spec.framework)
    reference = session.graph.targets[f"{model_name}:{ROLE_REFERENCE}"]
    with tempfile.TemporaryDirectory(prefix="navbuild-verify-") as scratch:
        out, work = Path(scratch) / "out", Path(scratch) / "work"
        out.mkdir()
        work.mkdir()
        rule.build(BuildContext(model=spec, target=reference.name, precision="fp32", device="cpu",
                                params=dict(reference.params), out_dir=out, input_dir=None, samples=[sample],
                                log=lambda message: None, workdir=work))
        expected = tensors.load(out / reference.tensor_file)[0]
    return Case(", ".join(f"{label} = {size}" for label, size in chosen.items()) + " (no sample had it)",
                sample, expected)


def stored_cases(model: Mapping[str, Any]) -> list[Case]:
    from navbuild import tensors

    samples = tensors.load(model["samples"]["path"])
    expected = tensors.load(model["reference"]["path"])
    return [Case(f"sample {index}", sample, outputs) for index, (sample, outputs) in enumerate(zip(samples, expected))]


def verify(repo: Path, status: Mapping[str, Any], deployed: list[Deployed], cases: Mapping[str, list[Case]],
           tolerance: Callable[[str, str, str], Any], *, pythonpath: list[Path],
           install: triton_server.Install | None = None) -> list[Verdict]:
    """Serve ``repo``, send each deployed model its ``cases`` (by model name) and compare the answers;
    ``tolerance(model, precision, output)`` gives each output's Tolerance."""
    with tempfile.TemporaryDirectory(prefix="navbuild-tritonserver-") as workdir:
        with triton_server.serve(repo, Path(workdir), pythonpath=pythonpath, install=install, strict=False) as url:
            states = triton_server.model_states(url)
            client = _client(url)
            try:
                return [_verify_one(client, states, status, each, cases.get(each.model, []), tolerance)
                        for each in deployed]
            finally:
                client.close()


def _client(url: str) -> Any:
    import tritonclient.http as http

    return http.InferenceServerClient(url, connection_timeout=REQUEST_TIMEOUT_S, network_timeout=REQUEST_TIMEOUT_S)


def _verify_one(client: Any, states: Mapping[str, Mapping[str, str]], status: Mapping[str, Any], deployed: Deployed,
                cases: list[Case], tolerance: Callable[[str, str, str], Any]) -> Verdict:
    from navbuild.measure.correctness import compare

    state = states.get(deployed.triton_name, {"state": "absent", "reason": "not in the repository index"})
    if state["state"] != "READY":
        return Verdict(deployed, False, [f"not loaded by the server ({state['state']}): {state['reason']}"])
    model = status["models"][deployed.model]
    precision = model["targets"][deployed.target].get("precision", "fp32")
    inputs, outputs = triton_config.io_names(model, deployed.serving)
    config = client.get_model_config(deployed.triton_name)
    input_types = {entry["name"]: entry["data_type"] for entry in config.get("input", [])}
    verdict = Verdict(deployed, True)
    for case in cases:
        try:
            answer = _infer(client, deployed.triton_name, case.inputs, inputs, outputs, input_types)
        except Exception as exc:  # noqa: BLE001 - the server's refusal is the finding
            verdict.passed = False
            verdict.lines.append(f"{case.label}: the server refused it: {type(exc).__name__}: {exc}")
            continue
        answer = {name: value.astype(case.expected[name].dtype, copy=False) if name in case.expected else value
                  for name, value in answer.items()}
        result = compare([answer], [case.expected], lambda output: tolerance(deployed.model, precision, output))
        worst = max((figures.get("max_abs", 0.0) for figures in result["outputs"].values()), default=0.0)
        if result["failures"]:
            verdict.passed = False
            verdict.lines.extend(f"{case.label}: {failure.replace(', sample 0:', ':')}" for failure in result["failures"])
        else:
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in answer.items())
            verdict.lines.append(f"{case.label}: equal to the reference (max abs {worst:.1e}; {shapes})")
    return verdict


def _infer(client: Any, model: str, feed: Mapping[str, np.ndarray], inputs: list[tuple[str, str]],
           outputs: list[tuple[str, str]], input_types: Mapping[str, str]) -> dict[str, np.ndarray]:
    import numpy as np
    import tritonclient.http as http
    from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

    request = []
    for name, triton_name in inputs:
        array = np.asarray(feed[name])
        wanted = input_types.get(triton_name, "")
        if wanted.startswith("TYPE_"):  # the artifact's own types (an fp16 TorchScript file takes fp16)
            array = array.astype(triton_to_np_dtype(wanted.removeprefix("TYPE_")), copy=False)
        tensor = http.InferInput(triton_name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        request.append(tensor)
    wanted_outputs = [http.InferRequestedOutput(triton_name) for _, triton_name in outputs]
    result = client.infer(model, request, outputs=wanted_outputs)
    return {name: result.as_numpy(triton_name) for name, triton_name in outputs}
