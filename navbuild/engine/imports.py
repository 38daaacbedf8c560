"""What a model's own code imports, read without running it, and which of those this machine lacks.

``navbuild list`` asks before it says a target can be built here: the entry file and the samples
file are parsed with ``ast``; an import of a module of the project (a file or package under the
project root, which is first on the import path while the entry runs, or beside the importing
file) is followed into that module; every other top-level module is looked up with
``importlib.util.find_spec``, which finds a module without importing it. An import the code guards
(inside ``try`` with an ``except ImportError``, or under ``if TYPE_CHECKING:``) is optional and not
asked for. Nothing is imported: the check costs a parse per file.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def missing_modules(root: Path, files: list[Path]) -> list[str]:
    """The top-level modules that ``files`` (and the project modules they import) need and this
    interpreter cannot find, sorted."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    outside: set[str] = set()
    todo = [Path(f).resolve() for f in files if Path(f).suffix == ".py" and Path(f).is_file()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for level, name in imported_names(path):
            local = _project_module(root, path, level, name)
            if local is not None:
                todo.extend(local)
            elif level == 0:
                outside.add(name.split(".")[0])
    return sorted(top for top in outside if not _installed(top))


def imported_names(path: Path) -> list[tuple[int, str]]:
    """``(level, module)`` of every import in the file that the code does not guard; ``from . import
    x`` gives ``(1, "x")``, ``from .a import b`` gives ``(1, "a.b")`` (either may name a module)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []  # a file that does not parse fails its build with Python's own message
    found: list[tuple[int, str]] = []
    for node in _unguarded(tree):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                found.extend((node.level, f"{base}.{alias.name}".strip(".")) for alias in node.names)
            else:
                found.append((0, base))
    return found


def _unguarded(tree: ast.AST) -> list[ast.AST]:
    """The import statements not under ``try: ... except ImportError`` nor ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            return
        if isinstance(node, ast.Try) and any(_catches_import_errors(h) for h in node.handlers):
            for child in node.orelse + node.finalbody:
                visit(child)
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, (ast.Name, ast.Attribute)) and ast.unparse(n).split(".")[-1] in GUARDS for n in names)


def _project_module(root: Path, importer: Path, level: int, name: str) -> list[Path] | None:
    """The files of the project that an import names (its packages' ``__init__.py`` too), or None
    when it names no module of the project."""
    if level:
        base = importer.parent
        for _ in range(level - 1):
            base = base.parent
        bases = [base]
    else:
        bases = [root, importer.parent]
    for base in bases:
        files = _module_files(base, name.split("."))
        if files is not None:
            return files
    return None


def _module_files(base: Path, parts: list[str]) -> list[Path] | None:
    files: list[Path] = []
    folder = base
    for index, part in enumerate(parts):
        as_file, as_package = folder / f"{part}.py", folder / part
        if as_file.is_file():
            return [*files, as_file]
        if not as_package.is_dir():  # `from pkg import name`: name may be an attribute of pkg
            return files if index else None
        if (as_package / "__init__.py").is_file():
            files.append(as_package / "__init__.py")
        folder = as_package
    return files


@lru_cache(maxsize=None)
def _installed(top: str) -> bool:
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__future__":
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False
