"""Each command declares its own options, in its own module (doit's ``cmd_*.py`` shape); cli.py
declares only those every command shares, and assembles one parser from the rest."""
from __future__ import annotations

import argparse
import ast
import importlib
from pathlib import Path

import pytest

from navbuild import cli

COMMANDS = Path(cli.__file__).parent / "commands"
SHARED = {"words", "config", "verbose", "quiet", "help"}


def declared(module) -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    if hasattr(module, "add_options"):
        module.add_options(parser)
    return {action.dest for action in parser._actions}


def options_read(path: Path) -> set[str]:
    """The ``args.<name>`` a command module reads."""
    return {node.attr for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "args"}


def command_imports(path: Path) -> set[str]:
    """The other command modules it imports (profile builds through build_cmd, with its options)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "navbuild.commands":
            found.update(alias.name for alias in node.names)
    return found


def test_cli_declares_only_the_shared_options():
    tree = ast.parse(Path(cli.__file__).read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"]
    assert {ast.literal_eval(call.args[-1]).lstrip("-") for call in calls} == SHARED - {"help"}


@pytest.mark.parametrize("name", cli.COMMAND_MODULES)
def test_each_command_reads_only_what_it_declares(name):
    module = importlib.import_module(f"navbuild.commands.{name}")
    path = COMMANDS / f"{name}.py"
    allowed = SHARED | declared(module)
    for other in command_imports(path):
        allowed |= declared(importlib.import_module(f"navbuild.commands.{other}"))
    assert options_read(path) <= allowed, options_read(path) - allowed


def test_one_parser_takes_every_command_option_anywhere_on_the_line():
    commands = cli.command_modules()
    owners: dict[str, str] = {}
    for module in dict.fromkeys(commands.values()):
        for dest in declared(module):
            assert dest not in owners, f"--{dest} declared by {owners[dest]} and {module.__name__}"
            owners[dest] = module.__name__
    args = cli.parser(commands).parse_intermixed_args(["--max-size", "1G", "gc", "-q", "--repair"])
    assert (args.words, args.max_size, args.repair, args.quiet, args.jobs) == (["gc"], "1G", True, True, 1)
    with pytest.raises(SystemExit):
        cli.parser(commands).parse_intermixed_args(["all", "-j", "0"])  # checked by build_cmd's own type
