"""What users deploy: ``navbuild package`` and ``navbuild triton``.

* ``package [-o PATH] [--all-targets] [--sign KEYFILE]``: the byte-reproducible ``.nav`` zip
  (docs/deploy.md), signed with an Ed25519 key when asked (``deploy/signing.py``).
* ``triton --repo DIR [--model M] [--target T] [--strategy S] [--ort-tensorrt] [--verify]``: a Triton
  model repository for each model's selected (or given) target; a warning names each model whose
  backend the tritonserver found here lacks; ``--verify`` serves the repository on that server and
  compares its answers with the reference (``deploy/triton_verify.py``): exit 1 when one differs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from navbuild.deploy import project_package, triton_server, triton_verify
from navbuild.engine.project import open_project
from navbuild.engine.session import Session
from navbuild.view.console import console


COMMANDS = {"package": "write the .nav package (-o PATH, --all-targets, --sign KEY)",
            "triton": "write a Triton model repository (--repo DIR; --verify serves it)"}


def add_options(parser: argparse.ArgumentParser) -> None:
    deploy = parser.add_argument_group("package and triton")
    deploy.add_argument("-o", "--output", help="package: where to write the .nav file")
    deploy.add_argument("--all-targets", action="store_true", help="package: every built target, not just the selected")
    deploy.add_argument("--sign", metavar="KEYFILE",
                        help="package: sign it with this Ed25519 private key (PEM or OpenSSH); projects that list "
                             "its public key in [trust] keys take its artifacts as proven")
    deploy.add_argument("--repo", help="triton: the model repository folder (default: model_repository)")
    deploy.add_argument("--model", help="triton: only this model")
    deploy.add_argument("--target", help="triton: deploy this target instead of the strategy's choice")
    deploy.add_argument("--strategy", help="triton: max-throughput, min-latency, latency-budget:5ms")
    deploy.add_argument("--backend", default="auto",
                        help="triton: auto (native backend where Triton has one) or python (navbuild's runner)")
    deploy.add_argument("--ort-tensorrt", action="store_true", help="triton: TensorRT accelerator for ONNX models")
    deploy.add_argument("--verify", action="store_true",
                        help="triton: serve the repository on a real tritonserver (loopback) and check its answers "
                             "on the samples and on a sequence length no sample had")


def main(args: argparse.Namespace) -> int:
    from navbuild.engine.options import Options

    command = args.words[0]
    session = open_project(args.config, Options(config_arg=args.config))
    session.store.hold_shared()  # what is shipped is not collected while it is read
    try:
        if command == "package":
            key = _signing_key(args.sign)
            path = project_package.write(session, Path(args.output) if args.output else None,
                                         include_all=args.all_targets, sign_key=key)
            console().print(f"package: {path}", highlight=False)
            if key is not None:
                from navbuild.deploy.signing import public_key_text

                console().print(f"signed by {public_key_text(key)}\n  a project that trusts this key lists it in "
                                f"navbuild.toml: [trust] keys = [\"{public_key_text(key)}\"]", highlight=False,
                                markup=False)
            return 0
        return _triton(session, args)
    finally:
        session.close()


def _signing_key(path: str | None) -> Any:
    if path is None:
        return None
    from navbuild.deploy.signing import load_private_key

    return load_private_key(Path(path))


TRITON_EXTRA = "pip install -e '.[triton]'"


def _triton(session: Session, args: argparse.Namespace) -> int:
    from navbuild.deploy import status
    from navbuild.deploy.triton_repo import DeployError, write_model_repositories, write_model_repository

    try:  # config.pbtxt is written with tritonclient's schema: without it, say which extra to install
        import tritonclient.grpc.model_config_pb2  # noqa: F401
    except ImportError as exc:
        console(stderr=True).print(f"navbuild: error: navbuild triton needs tritonclient ({exc}); install the "
                                   f"triton extra: {TRITON_EXTRA}", highlight=False, markup=False)
        return 2
    collected = status.collect(session)
    unbuilt = unbuilt_models(collected, [args.model] if args.model else sorted(collected.get("models") or {}))
    if unbuilt:
        console(stderr=True).print(f"navbuild: error: nothing to deploy yet: {_unbuilt_text(unbuilt)}; build "
                                   f"{'it' if len(unbuilt) == 1 else 'them'} first: "
                                   f"{build_command(session, unbuilt)}", highlight=False, markup=False)
        return 1
    repo = Path(args.repo or "model_repository")
    strategy = args.strategy or session.project.profile.strategies[0]
    if args.target and ":" in args.target:  # "multiio:onnx", as every other command names targets
        model, _, args.target = args.target.partition(":")
        if args.model and args.model != model:
            console(stderr=True).print(f"navbuild: --target {model}:{args.target} is not a target of --model {args.model}")
            return 2
        args.model = model
    try:
        if args.target:
            if not args.model:
                console(stderr=True).print("navbuild: --target needs --model (or a target named model:format)")
                return 2
            paths = [write_model_repository(collected, args.model, repo, target=args.target, strategy=strategy,
                                            ort_tensorrt=args.ort_tensorrt, backend=args.backend,
                                            source_root=session.project.root)]
        else:
            paths = write_model_repositories(collected, repo, models=[args.model] if args.model else None,
                                             strategy=strategy, ort_tensorrt=args.ort_tensorrt,
                                             backend=args.backend, source_root=session.project.root)
    except DeployError as exc:
        console(stderr=True).print(f"navbuild: error: {exc}")
        return 1
    deployed = [_deployed(collected, args.model if args.target else path.name, path.name, args, strategy)
                for path in paths]
    install = triton_server.find()
    for path, each in zip(paths, deployed):
        console().print(f"triton: {path}", highlight=False)
        _say_renamed(collected, each.model, args, strategy)
        lacking = triton_verify.missing_backend(install, each.serving)
        if lacking:
            console(stderr=True).print(f"navbuild: warning: {each.model} ({each.target}, backend "
                                       f"{each.serving.backend}): {lacking}", highlight=False, markup=False)
    if args.verify:
        return _verify(session, collected, repo, deployed, install)
    return 0


def unbuilt_models(collected: dict[str, Any], names: list[str]) -> dict[str, int]:
    """The models of ``names`` that have no target built yet and some not built (none failed them
    all: those have their own message), with how many targets each lacks."""
    from navbuild.deploy.triton_repo import USABLE

    found = {}
    for name in names:
        targets = ((collected.get("models") or {}).get(name) or {}).get("targets") or {}
        missing = sum(entry.get("status") == "missing" for entry in targets.values())
        if missing and not any(entry.get("status") in USABLE for entry in targets.values()):
            found[name] = missing
    return found


def _unbuilt_text(unbuilt: dict[str, int]) -> str:
    parts = [f"{name} ({count} target{'s' if count > 1 else ''} not built)" for name, count in unbuilt.items()]
    return ("model " if len(parts) == 1 else "models ") + ", ".join(parts)


def build_command(session: Session, models: dict[str, int] | list[str]) -> str:
    """``navbuild [--config C] m1 m2``: what builds (and profiles) these models."""
    config = f" --config {session.options.config_arg}" if session.options.config_arg else ""
    return f"navbuild{config} {' '.join(models)}"


def _deployed(collected: dict[str, Any], model: str, triton_name: str, args: argparse.Namespace,
              strategy: str) -> Any:
    from navbuild.deploy.triton_repo import deployed_target, serving

    target, entry = deployed_target(collected, model, target=args.target, strategy=strategy)
    how = serving(entry, collected["models"][model].get("framework"), args.backend, f"{model}:{target}")
    return triton_verify.Deployed(triton_name=triton_name, model=model, target=target, serving=how)


def _verify(session: Session, collected: dict[str, Any], repo: Path, deployed: list[Any],
            install: Any) -> int:
    """Serve ``repo`` and compare each model's answers with the reference: 0 when all agree."""
    import navbuild

    if install is None:
        console(stderr=True).print("navbuild: error: --verify needs a tritonserver: put one on PATH or install "
                                   f"nvidia-pytriton, which bundles one ({TRITON_EXTRA})", highlight=False, markup=False)
        return 2
    console().print(f"verify: starting {install.label} on 127.0.0.1", highlight=False, markup=False)
    cases = {}
    for each in deployed:
        stored = triton_verify.stored_cases(collected["models"][each.model])
        unseen = triton_verify.unseen_case(session, each.model, [case.inputs for case in stored])
        cases[each.model] = stored + ([unseen] if unseen else [])
    models = session.project.models
    try:
        verdicts = triton_verify.verify(
            repo, collected, deployed, cases,
            lambda model, precision, output: models[model].correctness.tolerance(precision, output),
            pythonpath=[Path(navbuild.__file__).resolve().parent.parent, session.project.root], install=install)
    except triton_server.ServerError as exc:
        console(stderr=True).print(f"navbuild: error: verify: {exc}", highlight=False, markup=False)
        return 1
    for verdict in verdicts:
        head = "passed" if verdict.passed else "FAILED"
        console().print(f"verify: {verdict.deployed.triton_name} ({verdict.deployed.target}, "
                        f"{verdict.deployed.serving.backend} backend): {head}", highlight=False, markup=False)
        for line in verdict.lines:
            console().print(f"  {line}", highlight=False, markup=False)
    return 0 if all(verdict.passed for verdict in verdicts) else 1


def _say_renamed(collected: dict[str, Any], model: str, args: argparse.Namespace, strategy: str) -> None:
    from navbuild.deploy.triton_repo import renamed_tensors

    renamed = renamed_tensors(collected, model, target=args.target, strategy=strategy, backend=args.backend)
    if renamed:
        pairs = ", ".join(f"{name} -> {triton_name}" for name, triton_name in renamed)
        console().print(f"  Triton's pytorch backend takes TorchScript tensors by position; clients use the "
                        f"names {pairs}", highlight=False)
