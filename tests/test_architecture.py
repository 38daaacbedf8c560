"""The layers hold (docs/architecture.md): read from the source with ``ast``, nothing imported.

- the engine (``navbuild/``) imports no rule family; the registry names the built-in families as
  strings and imports them with importlib;
- rule families use only the engine's public interfaces;
- no import cycle among navbuild's modules, within a family or between families (imports inside
  functions count; ``if TYPE_CHECKING:`` blocks do not, they never run);
- every family has the same files: ``__init__.py``, ``build.py``, ``loader.py``, and ``runner.py``
  when it brings runners of its own (a family may run its artifacts with another's runner).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("navbuild", "rules")
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
    """The navbuild and rules modules that ``name`` imports anywhere (except under TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:  # `from pkg import module` imports the module
                    full = f"{base}.{alias.name}"
                    found.add(full if full in known else base)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
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
                       for other in others if other.split(".")[0] == "rules")
    assert offenders == []


def test_rule_families_use_only_the_public_interfaces():
    graph = import_graph()
    offenders = sorted((name, other) for name, others in graph.items() if name.split(".")[0] == "rules"
                       for other in others if other.split(".")[0] == "navbuild" and other not in PUBLIC)
    assert offenders == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_family_has_the_same_files():
    families = [path for path in sorted((REPO / "rules").iterdir())
                if path.is_dir() and (path / "__init__.py").is_file()]
    assert families
    for family in families:
        missing = [name for name in FAMILY_FILES if not (family / name).is_file()]
        assert not missing, f"rules/{family.name} lacks {missing}"
        module = importlib.import_module(f"rules.{family.name}")  # families import no framework
        assert bool(getattr(module, "RUNNERS", ())) == (family / "runner.py").is_file(), family.name


def test_the_registry_names_the_builtin_families_without_importing_them():
    from navbuild.engine.registry import BUILTIN_MODULES

    source = (REPO / "navbuild" / "engine" / "registry.py").read_text()
    assert "import rules" not in source and "from rules" not in source
    on_disk = {name for name in module_files() if name.count(".") == 1 and name.startswith("rules.")}
    present = [name for name in BUILTIN_MODULES if name in on_disk]
    assert "rules.samples" in present and "rules.torch" in present
