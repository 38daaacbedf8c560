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
from typing import Any

from navbuild.deploy.package import PackageError
from navbuild.engine.cards import CardError
from navbuild.engine.config import ConfigError
from navbuild.engine.graph import GraphError
from navbuild.engine.ray_executor import ExecutorError
from navbuild.engine.registry import RegistryError
from navbuild.engine.remote_settings import RemoteSettingsError

# each command module declares its words (COMMANDS), its options (add_options) and runs (main);
# in this order they are listed by --help
COMMAND_MODULES = ("list_cmd", "status_cmd", "clean_cmd", "fsck_cmd", "profile_cmd", "graph_cmd", "deploy_cmd",
                   "build_cmd", "verify_cmd")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def command_modules() -> dict[str, Any]:
    """Command word -> the module that runs it."""
    found = {}
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"navbuild.commands.{name}")
        found.update(dict.fromkeys(module.COMMANDS, module))
    return found


def parser(commands: dict[str, Any]) -> argparse.ArgumentParser:
    """The options every command shares, then each command's own (one parser, since options may
    come before, between or after the words: ``navbuild -q all -j 4``)."""
    listing = "\n".join(f"  {word:<9} {module.COMMANDS[word]}" for word, module in commands.items())
    p = argparse.ArgumentParser(
        prog="navbuild", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build, check and package deep-learning model deployments.",
        epilog=f"commands:\n  all       build every target (the default)\n  TARGET    build targets or aliases "
               f"(cnn:onnx, onnx, trt-fp16, fp16, cnn)\n{listing}")
    p.add_argument("words", nargs="*", help="a command, or targets and aliases to build")
    p.add_argument("-c", "--config", help="path of navbuild.toml (default: found from the current folder up)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every target and each build's output")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary's failures")
    for module in dict.fromkeys(commands.values()):
        if hasattr(module, "add_options"):
            module.add_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    commands = command_modules()
    args = parser(commands).parse_intermixed_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit: an error, not a kill
    try:
        word = args.words[0] if args.words and args.words[0] in commands else "build"
        return commands[word].main(args)
    except (ConfigError, GraphError, RegistryError, PackageError, RemoteSettingsError, ExecutorError,
            CardError) as exc:
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
