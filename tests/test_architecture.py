"""The layers hold (docs/architecture.md): read from the source with ``ast``, nothing imported.

- the engine (``navbuild/``) imports no rule family and names none: the registry finds navbuild's
  own families through the ``navbuild.rules`` entry point, as any third party's;
- rule families use only the engine's public interfaces;
- no import cycle among navbuild's modules, within a family or between families: every import
  counts, those inside functions and under ``if TYPE_CHECKING:`` too (a cycle that an import
  inside a function or a type-only import hides is still two modules that need each other);
- the engine and measurement never import what sits above them: deploy, view, the commands, the
  CLI and the Python API;
- every family has the same files: ``__init__.py``, ``build.py``, ``loader.py``, and ``runner.py``
  when it brings runners of its own (a family may run its artifacts with another's runner).
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("navbuild", "navbuild_rules")
PUBLIC = {"navbuild", "navbuild.rule", "navbuild.runner", "navbuild.tensors", "navbuild.hashing",
          "navbuild.ziputil", "navbuild.lazy", "navbuild.dynamic_axes"}
FAMILY_FILES = ("__init__.py", "build.py", "loader.py")


def module_files() -> dict[str, Path]:
    found = {}
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The navbuild and rules modules that ``name`` imports anywhere: at the top, inside functions,
    under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports the module
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {module for module in found if module.split(".")[0] in LAYERS and module != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imported_modules(name, path, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in graph:
                continue
            if other not in index:
                strong(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found


def test_the_engine_imports_no_rule_family():
    graph = import_graph()
    offenders = sorted((name, other) for name, others in graph.items() if name.split(".")[0] == "navbuild"
                       for other in others if other.split(".")[0] == "navbuild_rules")
    assert offenders == []


def test_rule_families_use_only_the_public_interfaces():
    graph = import_graph()
    offenders = sorted((name, other) for name, others in graph.items() if name.split(".")[0] == "navbuild_rules"
                       for other in others if other.split(".")[0] == "navbuild" and other not in PUBLIC)
    assert offenders == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def room(module: str) -> str:
    """``navbuild.engine.store`` -> ``engine``; ``navbuild.cli`` -> ``cli``; ``navbuild`` -> ``navbuild``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_engine_and_measurement_import_nothing_above_them():
    above = {"deploy", "view", "commands", "cli", "api"}
    graph = import_graph()
    offenders = sorted((name, other) for name, others in graph.items()
                       if name.startswith("navbuild.") and room(name) in ("engine", "measure")
                       for other in others if other.startswith("navbuild.") and room(other) in above)
    assert offenders == []


def test_the_checks_see_what_hides_in_functions_and_type_checking_blocks(tmp_path):
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from navbuild.engine import session\n"
              "def later():\n    from navbuild.deploy import package\n")
    (tmp_path / "m.py").write_text(source)
    known = {"navbuild.engine.session", "navbuild.deploy.package"}
    assert imported_modules("navbuild.engine.m", tmp_path / "m.py", known) == known


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_family_has_the_same_files():
    families = [path for path in sorted((REPO / "navbuild_rules").iterdir())
                if path.is_dir() and (path / "__init__.py").is_file()]
    assert families
    for family in families:
        missing = [name for name in FAMILY_FILES if not (family / name).is_file()]
        assert not missing, f"navbuild_rules/{family.name} lacks {missing}"
        module = importlib.import_module(f"navbuild_rules.{family.name}")  # families import no framework
        assert bool(getattr(module, "RUNNERS", ())) == (family / "runner.py").is_file(), family.name


def families_on_disk() -> list[str]:
    """The rule modules under navbuild_rules/: each family's package, and navbuild_rules/samples.py (every model's samples)."""
    return sorted(path.stem for path in (REPO / "navbuild_rules").iterdir()
                  if (path / "__init__.py").is_file() or (path.suffix == ".py" and path.stem != "__init__"))


def code_strings(path: Path) -> list[str]:
    """The string constants of a module's code (docstrings left out: they may point to a family)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_rule_family_is_named_in_the_engine():
    named = re.compile(r"\brules[./](%s)\b" % "|".join(families_on_disk()))
    offenders = sorted((name, text) for name, path in module_files().items() if name.split(".")[0] == "navbuild"
                       for text in code_strings(path) if named.search(text))
    assert offenders == []
    assert not hasattr(importlib.import_module("navbuild.engine.registry"), "BUILTIN_MODULES")


def test_navbuilds_own_families_are_entry_points_of_its_distribution():
    """Every family on disk is registered in pyproject.toml, as a third party's would be."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["navbuild.rules"]
    assert sorted(declared.values()) == [f"navbuild_rules.{family}" for family in families_on_disk()]


def test_a_checkout_that_is_not_installed_says_how_to_install_it(monkeypatch):
    from navbuild.engine import registry

    monkeypatch.setattr(registry.metadata, "entry_points", lambda **kw: [])
    registry.default_registry.cache_clear()
    try:
        with pytest.raises(registry.RegistryError, match=r"no rule family is registered: .*is not installed\. "
                                                         r"Install the checkout: pip install -e "):
            registry.default_registry()
    finally:
        registry.default_registry.cache_clear()


def test_measuring_imports_nothing_above_it():
    """measure/ holds its own settings schema (measure/settings.py): the engine fills it, measure never
    reads the engine's configuration back (no arrow up)."""
    graph = import_graph()
    offenders = sorted((name, other) for name, others in graph.items() if name.startswith("navbuild.measure")
                       for other in others if other.startswith("navbuild.") and other.split(".")[1]
                       in ("engine", "deploy", "view", "commands", "api", "cli"))
    assert offenders == []


def test_an_install_of_an_older_checkout_says_so_instead_of_registering_nothing(monkeypatch):
    """The families moved from ``rules`` to ``navbuild_rules``: an install made before (or a stale
    navbuild.egg-info in the current folder) names modules that are gone; every build would find no
    format at all."""
    from importlib.metadata import EntryPoint

    from navbuild.engine import registry

    class Dist:
        name = "navbuild"

    stale = [EntryPoint(name="torch", value="rules.torch", group=registry.ENTRY_POINT_GROUP)]
    stale = [entry._for(Dist()) if hasattr(entry, "_for") else entry for entry in stale]
    monkeypatch.setattr(registry.metadata, "entry_points", lambda **kw: stale)
    registry.default_registry.cache_clear()
    try:
        with pytest.raises(registry.RegistryError, match=r"the installed entry points \(rules\.torch\) name modules "
                                                         r"this checkout .* does not have"):
            registry.default_registry()
    finally:
        registry.default_registry.cache_clear()
