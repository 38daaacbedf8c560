"""What a model's code read from the project, found by running it: its discovered sources.

ccache's direct mode, or a Make depfile, for models. While a target that runs the model's code
builds (its samples, its reference, an export from the source), this process notes every file under
the project root that Python imported or opened for reading, and the libraries that the project's
code imports. The list is stored beside the action, under the key of the declared inputs
(``Store.put_discovered``), and its digests enter the key material as ``discovered``:

    declared material --key--> discovered lists (paths, libraries) --hash the files, read the versions-->
    material + discovered --key--> the manifest

so an edit of any discovered file, or another version of a library the code imports, changes the
key, though ``sources`` never named it. How a file is seen:

- an audit hook (``sys.addaudithook``) sees each ``open`` for reading: the entry file, data files
  the code reads, and modules imported for the first time in this process (a ``.pyc`` stands for
  its ``.py``);
- ``builtins.__import__``, wrapped once per process, notes which modules each file outside the
  installed libraries imports, whenever its import statements run; a module that an earlier target
  of the same worker imported (cached in ``sys.modules``, never opened again) is still followed,
  through what it imports, down to the files.

Not seen: code run in another process (the model's reference, which every export from the source
waits for, lends its list to them: ``with_reference``), a module imported through
``importlib.import_module`` and cached before the target ran, files read by native code that Python's
``open`` does not see, files outside the project root, and the standard library's version. The
folders navbuild owns (store, outputs, navbuild's and the rule families' own code) and hidden folders
are never sources.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import importlib.util
import os
import site
import sys
import sysconfig
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

MAX_LISTS = 8  # lists kept per declared key: one per distinct set a build of it found (ccache keeps several)
MAX_FILES = 10_000  # a list longer than this is refused as malformed

_installed = False
_imports: dict[str, set[str]] = {}  # a tracked file -> the modules its import statements named
_tracked: dict[str, str | None] = {}  # an importer's __file__ -> its normalized path, None when not tracked
_active: Recording | None = None  # the recording of the target that runs now (one at a time per process)


@dataclass(frozen=True)
class Found:
    """One build's discovered list: paths relative to the project root, and library distributions."""

    sources: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"sources": list(self.sources), "tools": list(self.tools)}

    @classmethod
    def from_dict(cls, data: Any) -> Found | None:
        """A list read from the store, a remote cache or a package; None when malformed."""
        if not isinstance(data, dict):
            return None
        sources, tools = data.get("sources", []), data.get("tools", [])
        if not (isinstance(sources, list) and isinstance(tools, list) and len(sources) + len(tools) <= MAX_FILES):
            return None
        if not all(isinstance(s, str) and safe_relative(s) for s in sources):
            return None
        if not all(isinstance(t, str) and 0 < len(t) <= 200 for t in tools):
            return None
        return cls(tuple(sorted(set(sources))), tuple(sorted(set(tools))))

    def union(self, other: Found) -> Found:
        return Found(tuple(sorted({*self.sources, *other.sources})), tuple(sorted({*self.tools, *other.tools})))

    def without(self, declared: Iterable[str]) -> Found:
        """Without the files ``sources`` already declares (they are in the key as declared ones)."""
        declared = set(declared)
        return Found(tuple(s for s in self.sources if s not in declared), self.tools)


def safe_relative(name: str) -> bool:
    if not name or name.startswith("/") or "\\" in name or "\0" in name or len(name) > 1024:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def material(root: Path, found: Found, digest_of: Callable[[Path], str],
             version_of: Callable[[tuple[str, ...]], dict[str, str | None]]) -> dict[str, Any]:
    """The key material of a discovered list here: each file's digest (None: no such file now) and
    each library's installed version (None: not installed)."""
    sources: dict[str, str | None] = {}
    for relative in found.sources:
        path = root / relative
        try:
            sources[relative] = digest_of(path) if path.is_file() else None
        except OSError:
            sources[relative] = None
    return {"sources": sources, "tools": version_of(found.tools)}


def found_in(material_: dict[str, Any]) -> Found | None:
    """The discovered list a key material records (None when it has none)."""
    discovered = material_.get("discovered")
    if not isinstance(discovered, dict):
        return None
    return Found.from_dict({"sources": list(discovered.get("sources") or {}), "tools": list(discovered.get("tools") or {})})


def declared(material_: dict[str, Any]) -> dict[str, Any]:
    """The key material without what was discovered: what the declared key is the digest of."""
    return {k: v for k, v in material_.items() if k != "discovered"}


# -- libraries and the project's own code ---------------------------------------------------------
@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """Where installed code lives (the standard library, site-packages): code there is a library's,
    known by its distribution and version, never by its text."""
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(str(Path(path).resolve()))
    for path in [*getattr(site, "getsitepackages", lambda: [])(), site.getusersitepackages()]:
        roots.add(str(Path(path).resolve()))
    return tuple(sorted(roots))


def in_library(path: str) -> bool:
    """A file of the standard library or of an installed distribution: under site-packages, or in a
    folder a distribution was installed into (``pip install --target``, a ``PYTHONPATH`` folder),
    where its ``.dist-info`` lies beside it. An editable install's code is not: its ``.dist-info``
    lies in site-packages, away from the code being written."""
    resolved = os.path.realpath(path)
    if any(resolved.startswith(root + os.sep) for root in library_roots()):
        return True
    for entry in filter(None, sys.path):
        folder = os.path.realpath(entry)
        if resolved.startswith(folder + os.sep):
            top = resolved[len(folder) + 1:].split(os.sep)[0].split(".")[0]
            if top in _installed_beside(folder):
                return True
    return False


@functools.lru_cache(maxsize=None)
def _installed_beside(folder: str) -> frozenset[str]:
    """The top-level modules that the distributions installed in ``folder`` (their ``.dist-info``
    there) provide."""
    tops: set[str] = set()
    for info in Path(folder).glob("*.dist-info"):
        with contextlib.suppress(OSError):
            listed = info / "top_level.txt"
            if listed.is_file():
                tops.update(line.strip() for line in listed.read_text().splitlines() if line.strip())
                continue
            for row in (info / "RECORD").read_text().splitlines():  # a wheel without top_level.txt
                first = row.split(",", 1)[0].split("/", 1)[0]
                if first and not first.endswith((".dist-info", ".data")) and first != "..":
                    tops.add(first.split(".")[0])
    return frozenset(tops)


@functools.lru_cache(maxsize=None)
def distributions_of(top: str) -> tuple[str, ...]:
    """The installed distributions that provide top-level module ``top`` (none for the standard library)."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
        return (metadata.distribution(top).metadata["Name"] or top,)  # the usual case: named alike
    return tuple(sorted(set(_packages_distributions().get(top, ()))))


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return dict(metadata.packages_distributions())


# -- recording ------------------------------------------------------------------------------------
class Recording:
    """What one target's action opened and imported, and the closure of that under ``root``."""

    def __init__(self, root: Path, excluded: Iterable[Path]) -> None:
        self.root = os.path.realpath(root)
        self.given_root = os.path.abspath(root)
        self.excluded = tuple(os.path.realpath(p) for p in excluded)
        self.opened: set[str] = set()
        self.written: set[str] = set()  # what the build wrote is its output, not its input
        self.importers: set[str] = set()

    def inside(self, path: str) -> bool:
        """A file of the project: under its root, in none of the folders navbuild owns, in no hidden
        folder (tools keep their state there: ``.git``, ``.venv``, the Python API's ``.navbuild-api``),
        not a library's."""
        if not path.startswith(self.root + os.sep):
            return False
        if any(part.startswith(".") for part in path[len(self.root) + 1:].split(os.sep)[:-1]):
            return False
        if any(path == p or path.startswith(p + os.sep) for p in self.excluded):
            return False
        return not in_library(path)

    def found(self) -> Found:
        """The project files read, and those reached through the imports of its code; the libraries
        that code imports."""
        near = (os.path.abspath(path) for path in self.opened)  # most of what a framework opens lies elsewhere
        start = {_source_of(os.path.realpath(path)) for path in near
                 if path.startswith(self.given_root + os.sep) or path.startswith(self.root + os.sep)}
        start |= self.importers
        start -= {os.path.realpath(os.path.abspath(path)) for path in self.written}
        files = {path for path in start if self.inside(path) and os.path.isfile(path)}
        pending, libraries = list(files), set()
        by_file = _modules_by_file()
        while pending:
            file = pending.pop()
            for name in _imports.get(file) or _globals_imports(by_file.get(file)):
                module_file = _file_of(sys.modules.get(name))
                if module_file is None:
                    continue
                if self.inside(module_file):
                    if module_file not in files and os.path.isfile(module_file):
                        files.add(module_file)
                        pending.append(module_file)
                elif in_library(module_file) and name.partition(".")[0] not in sys.stdlib_module_names:
                    libraries.add(name.partition(".")[0])
        tools = {dist for top in libraries for dist in distributions_of(top)}
        sources = (Path(path).relative_to(self.root).as_posix() for path in files)
        return Found(tuple(sorted(sources)), tuple(sorted(tools)))


@contextlib.contextmanager
def recording(root: Path, excluded: Iterable[Path]) -> Iterator[Recording]:
    """Note what the code run inside reads from ``root`` (one recording at a time per process)."""
    global _active
    install()
    record = Recording(root, excluded)
    _active = record
    try:
        yield record
    finally:
        _active = None


def install() -> None:
    """The audit hook and the import wrapper, once per process (neither can be taken back; both cost
    a dictionary look-up while nothing records). A worker installs them before any user code runs."""
    global _installed
    if _installed:
        return
    sys.addaudithook(_audit)
    builtins.__import__ = _wrapped(builtins.__import__)
    _installed = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or _active is None:
        return
    path, mode, flags = args
    if isinstance(path, int):
        return
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
        (mode is None and isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR)))
    with contextlib.suppress(Exception):
        (_active.written if writes else _active.opened).add(os.fsdecode(path))


def _wrapped(original: Callable[..., Any]) -> Callable[..., Any]:
    def __import__(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002 - its signature
        module = original(name, globals, locals, fromlist, level)
        importer = globals.get("__file__") if isinstance(globals, dict) else None
        if isinstance(importer, str):
            with contextlib.suppress(Exception):  # noting must never break an import
                _note(importer, name, globals, fromlist, level)
        return module

    return __import__


def _note(importer: str, name: str, globals_: dict[str, Any], fromlist: Any, level: int) -> None:
    if importer not in _tracked:
        path = os.path.realpath(os.path.abspath(importer))
        _tracked[importer] = None if in_library(path) else path
    path = _tracked[importer]
    if path is None:
        return
    full = importlib.util.resolve_name("." * level + name, globals_.get("__package__")) if level else name
    names = _imports.setdefault(path, set())
    parts = full.split(".")
    names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    for item in fromlist or ():
        if isinstance(item, str) and f"{full}.{item}" in sys.modules:
            names.add(f"{full}.{item}")
    if _active is not None:
        _active.importers.add(path)


def _source_of(path: str) -> str:
    """A ``__pycache__/x.cpython-311.pyc`` read by an import stands for ``x.py``."""
    if path.endswith(".pyc") and os.sep + "__pycache__" + os.sep in path:
        with contextlib.suppress(ValueError, NotImplementedError):
            return importlib.util.source_from_cache(path)
    return path


def _file_of(module: Any) -> str | None:
    file = getattr(module, "__file__", None)
    return os.path.realpath(file) if isinstance(file, str) else None


def _modules_by_file() -> dict[str, types.ModuleType]:
    return {path: module for module in list(sys.modules.values()) if (path := _file_of(module)) is not None}


def _globals_imports(module: types.ModuleType | None) -> set[str]:
    """What a module imported before the wrapper was installed, read from its globals: the modules
    and the modules of the functions and classes it holds."""
    if module is None:
        return set()
    names = set()
    for value in list(vars(module).values()):
        if isinstance(value, types.ModuleType):
            names.add(value.__name__)
        elif isinstance(getattr(value, "__module__", None), str) and isinstance(value, (type, types.FunctionType)):
            names.add(value.__module__)
    return names


def excluded_folders(store: Path, out: Path, rule_modules: Iterable[str]) -> list[Path]:
    """What is never a model's source although it may lie under the project root: the store, the
    outputs, and navbuild's and the rule families' own code (the repository's own example project)."""
    folders = [Path(store), Path(out), Path(__file__).resolve().parents[1]]
    for name in rule_modules:
        spec = importlib.util.find_spec(name.partition(".")[0])
        if spec is not None and spec.submodule_search_locations:
            folders.extend(Path(p) for p in spec.submodule_search_locations)
        elif spec is not None and spec.origin:
            folders.append(Path(spec.origin))
    return folders
