"""The ``navbuild`` command line: ``navbuild [options] [command | target | alias ...]``.

Exit codes CI can use: 0 everything built or cached (skips are not errors), 1 a target failed,
2 a usage or configuration error (nothing was built).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

COMMANDS = {
    "list": ("navbuild.commands.list_cmd", "every target with its rule, device binding and whether this machine can build it"),
    "status": ("navbuild.commands.status_cmd", "what is built, stale or missing, and why"),
    "explain": ("navbuild.commands.status_cmd", "which inputs changed since a target's last build"),
    "clean": ("navbuild.commands.clean_cmd", "delete materialized outputs (the store keeps every build)"),
    "gc": ("navbuild.commands.clean_cmd", "delete store objects that no manifest reaches (--max-size SIZE)"),
    "fsck": ("navbuild.commands.fsck_cmd", "re-hash the store and check its manifests (--repair)"),
    "profile": ("navbuild.commands.profile_cmd", "measure latency and throughput of targets (--force: again)"),
    "report": ("navbuild.commands.profile_cmd", "tables, report.json and profile.png per model"),
    "graph": ("navbuild.commands.graph_cmd", "the target graph with each target's state, as DOT (and PNG)"),
    "package": ("navbuild.commands.deploy_cmd", "write the .nav package (-o PATH, --all-targets)"),
    "triton": ("navbuild.commands.deploy_cmd", "write a Triton model repository (--repo DIR)"),
    "build": ("navbuild.commands.build_cmd", "build targets; --from PKG first imports a .nav package"),
    "verify": ("navbuild.commands.verify_cmd", "rebuild targets in a scratch store and compare with navbuild.lock"),
}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="navbuild", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build, check and package deep-learning model deployments.",
        epilog=f"commands:\n  all       build every target (the default)\n  TARGET    build targets or aliases "
               f"(cnn:onnx, onnx, trt-fp16, fp16, cnn)\n{commands}")
    p.add_argument("words", nargs="*", help="a command, or targets and aliases to build")
    p.add_argument("-c", "--config", help="path of navbuild.toml (default: found from the current folder up)")
    p.add_argument("-j", "--jobs", type=_at_least_one, default=1, help="targets built in parallel (worker processes)")
    p.add_argument("--gpu-jobs", type=_at_least_one, default=1, metavar="N",
                   help="of those, targets on one GPU at a time (default 1: a build or profile shares no GPU)")
    p.add_argument("--executor", metavar="KIND", default=None,
                   help="local (default), or ray / ray:auto / ray:HOST:PORT / ray://HOST:PORT: targets run as "
                        "Ray tasks, artifacts travel through the remote cache (docs/distributed.md)")
    p.add_argument("--gpu-type", metavar="TYPE",
                   help="--executor ray: GPU targets go to nodes of this accelerator type (H100, A100, ...)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every target and each build's output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary's failures")
    p.add_argument("--force", action="store_true", help="rebuild the named targets even when cached")
    p.add_argument("--retry-failed", action="store_true",
                   help="run targets that failed before with the same inputs (else their failure is replayed)")
    p.add_argument("--json", metavar="PATH", help="also write every target's status and figures as JSON")
    store = p.add_argument_group("gc and fsck")
    store.add_argument("--max-size", metavar="SIZE",
                       help="gc: then drop the least recently used builds until the store fits (10G, 500M)")
    store.add_argument("--repair", action="store_true", help="fsck: remove what is damaged and the garbage")
    remote = p.add_argument_group("remote cache (docs/remote-cache.md)")
    remote.add_argument("--remote-cache", metavar="URL",
                        help="share builds through this cache: http(s):// (Bazel's layout), file://, s3://, ...")
    remote.add_argument("--remote-cache-read-only", action="store_true",
                        help="restore from the remote cache, never upload (untrusted builds)")
    verify = p.add_argument_group("verify")
    verify.add_argument("--sample", type=int, metavar="N", help="verify: rebuild only N targets chosen at random")
    verify.add_argument("--seed", type=int, help="verify: the seed that chooses the sample")
    deploy = p.add_argument_group("package, triton and build --from")
    deploy.add_argument("-o", "--output", help="package: where to write the .nav file")
    deploy.add_argument("--all-targets", action="store_true", help="package: every built target, not just the selected")
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
    deploy.add_argument("--from", dest="from_package", metavar="PKG", help="build: import this .nav package first")
    deploy.add_argument("--package-limit", action="append", metavar="NAME=SIZE",
                        help="build --from: raise a limit on what a package may hold (entry=16G, total=64G, "
                             "entries=100000, ratio=200, status=64M)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)  # options may come before, between or after the words
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit: an error, not a kill
    from navbuild.engine.config import ConfigError
    from navbuild.engine.graph import GraphError
    from navbuild.deploy.package import PackageError
    from navbuild.engine.registry import RegistryError
    from navbuild.engine.remote_settings import RemoteSettingsError
    from navbuild.engine.ray_executor import ExecutorError

    try:
        if args.words and args.words[0] in COMMANDS:
            module = importlib.import_module(COMMANDS[args.words[0]][0])
            return module.main(args)
        from navbuild.commands import build_cmd

        return build_cmd.main(args)
    except (ConfigError, GraphError, RegistryError, PackageError, RemoteSettingsError, ExecutorError) as exc:
        print(f"navbuild: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("navbuild: interrupted; the store is consistent, run again to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a file-size limit, a permission: the machine's, not a bug
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"navbuild: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
