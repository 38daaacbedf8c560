"""Canonical TorchScript code: class, function and local names that depend on the model only.

TorchScript names the second and later variants of a class ``___torch_mangle_<n>`` with a
process-wide counter, caches compiled types across exports, and prints each Python module's
classes into one code file whose printer numbers temporaries (``_0``) and repeated local names
(``input0``) with counters shared by the file. So the same model exported after another one gets
other names, other file groupings and other numbers. ``canonical_entries`` renames all of them from
the model's structure alone and regroups the code files to match, since TorchScript finds a
class's code by its qualified name. Every rename is a bijection within its scope, so the code
means the same; the build loads and runs the result to make sure.
"""
from __future__ import annotations

import pickletools
import re
import struct
from typing import Any, Callable, Iterable, Mapping

_MANGLE = re.compile(r"\.___torch_mangle_\d+(?=\.)")
_QUALIFIED = re.compile(r"__torch__(?:\.\w+)+")
_TOP_LEVEL = re.compile(r"^\S", re.M)
_BLOCK_NAME = re.compile(r"(?:class|def) (\w+)")
_FINAL = re.compile(r"^  \w+ : Final\[")
_STRING_OR_NAME = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?<![\w.])([A-Za-z_]\w*)(?!\w)""")
_SIGNATURE = re.compile(r"def \w+\((.*?)\)\s*(?:->[^\n]*)?:\n", re.S)
_PARAMETER = re.compile(r"(?:^|,)\s*(\w+)\s*:")
_STRING_OR_TEMPORARY = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?<![\w.])_(\d+)(?!\w)""")


class NormalizeError(RuntimeError):
    pass


def canonical_entries(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """A TorchScript archive's entries with canonical names; code files regrouped in place."""
    blocks = _code_blocks(entries)
    canonical = _canonical_names(_canonical_order(entries, blocks))

    def requalify(text: str) -> str:
        return _QUALIFIED.sub(lambda match: _requalify_one(match.group(0), canonical), text)

    code_files = _code_files(blocks, canonical, requalify, _code_root(entries))
    result: list[tuple[str, bytes]] = []
    for name, data in entries:
        if _is_code(name):
            result.extend(code_files)  # all of them where the first code file was
            code_files = []
        elif name.endswith(".pkl"):
            result.append((name, rewrite_pickle_strings(data, requalify)))
        else:
            result.append((name, data))
    return result


def _is_code(name: str) -> bool:
    return "/code/" in name and name.endswith(".py")


def _code_root(entries: list[tuple[str, bytes]]) -> str:
    return next(name for name, _ in entries if _is_code(name)).split("/code/")[0] + "/code/"


def _code_blocks(entries: list[tuple[str, bytes]]) -> dict[str, str]:
    """Qualified name -> source of every top-level class and function in ``code/``."""
    blocks: dict[str, str] = {}
    for name, data in entries:
        if not _is_code(name):
            continue
        namespace = name.split("/code/", 1)[1][:-len(".py")].replace("/", ".")
        text = data.decode("utf-8")
        starts = [match.start() for match in _TOP_LEVEL.finditer(text)]
        if text.strip() and (not starts or starts[0] != 0):
            raise NormalizeError(f"unexpected TorchScript code layout in {name}")
        for start, end in zip(starts, starts[1:] + [len(text)]):
            block = text[start:end]
            match = _BLOCK_NAME.match(block)
            if not match:
                raise NormalizeError(f"unexpected TorchScript statement in {name}: {block.splitlines()[0]!r}")
            blocks[f"{namespace}.{match.group(1)}"] = block
    return blocks


def _canonical_order(entries: list[tuple[str, bytes]], blocks: Mapping[str, str]) -> list[str]:
    """Classes and functions in an order that depends on the model only, not on the names.

    The module tree (pickled objects) first, then breadth-first through the code that references
    further classes and functions; anything unreached last, ordered by its unmangled name and code.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(qualified: str | None) -> None:
        if qualified is not None and qualified in blocks and qualified not in seen:
            seen.add(qualified)
            order.append(qualified)

    for name, data in entries:
        if name.endswith(".pkl"):
            for text in pickle_strings(data):
                visit(_defined_prefix(text, blocks))
    index = 0
    while len(order) < len(blocks):
        if index == len(order):
            visit(min((q for q in blocks if q not in seen), key=lambda q: (_unmangled(q), _unmangled(blocks[q]))))
        for match in _QUALIFIED.finditer(blocks[order[index]]):
            visit(_defined_prefix(match.group(0), blocks))
        index += 1
    return order


def _canonical_names(order: Iterable[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    taken: set[str] = set()
    counter = 0
    for qualified in order:
        base = _unmangled(qualified)
        if base in taken:
            head, _, last = base.rpartition(".")
            names[qualified] = f"{head}.___torch_mangle_{counter}.{last}"
            counter += 1
        else:
            names[qualified] = base
            taken.add(base)
    return names


def _code_files(blocks: Mapping[str, str], canonical: Mapping[str, str], requalify: Callable[[str], str],
                root: str) -> list[tuple[str, bytes]]:
    """Blocks regrouped by their new namespace, in canonical order."""
    files: dict[str, list[str]] = {}
    for old, new in canonical.items():  # in canonical order
        namespace = new.rpartition(".")[0]
        block = renumber_locals(renumber_temporaries(sort_final_constants(requalify(blocks[old]))))
        files.setdefault(namespace, []).append(block)
    return [(root + namespace.replace(".", "/") + ".py", "".join(parts).encode("utf-8"))
            for namespace, parts in files.items()]


def _requalify_one(text: str, canonical: Mapping[str, str]) -> str:
    prefix = _defined_prefix(text, canonical)
    return text if prefix is None else canonical[prefix] + text[len(prefix):]


def _defined_prefix(text: str, defined: Mapping[str, Any]) -> str | None:
    """The longest dotted prefix of ``text`` that names a defined class or function."""
    if not text.startswith("__torch__"):
        return None
    parts = text.split(".")
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[:end])
        if candidate in defined:
            return candidate
    return None


def _unmangled(text: str) -> str:
    return _MANGLE.sub("", text)


def sort_final_constants(block: str) -> str:
    """Sort each run of ``name : Final[...] = value`` lines (printed in set order)."""
    lines, run, result = block.split("\n"), [], []
    for line in lines:
        if _FINAL.match(line):
            run.append(line)
            continue
        result.extend(sorted(run))
        run = []
        result.append(line)
    result.extend(sorted(run))
    return "\n".join(result)


def renumber_temporaries(block: str) -> str:
    """Number the printer's temporaries ``_0``, ``_1``... from 0 in each block.

    TorchScript numbers them per code file, so a block's numbers depend on the blocks printed
    before it in the same file, which depends on the names. String literals are left alone.
    """
    numbers: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        if match.group(1) is None:  # a string literal
            return match.group(0)
        return "_" + numbers.setdefault(match.group(1), str(len(numbers)))

    return _STRING_OR_TEMPORARY.sub(replace, block)


def renumber_locals(block: str) -> str:
    """Renumber the suffixes that the printer added to make local names unique, from 0 per block.

    In a function, the first value named ``input`` is printed ``input`` and later ones
    ``input<n>`` with ``n`` from a counter shared by the whole code file, so ``n`` follows the
    grouping too. For every bare local name ``b``, the names ``b<digits>`` of the block are
    renumbered ``b0``, ``b1``... in order of appearance: a bijection on local names, so the code means
    the same. Parameters keep their names (the printer never suffixes them: they come first), and
    so do attributes, keyword arguments, class-level declarations and strings.
    """
    parameters = {name for signature in _SIGNATURE.findall(block) for name in _PARAMETER.findall(signature)}
    spans = list(_local_name_spans(block))
    bare = {name for _, _, name in spans} | parameters
    renames: dict[str, str] = {}
    for _, _, name in spans:
        key = name.rstrip("0123456789")
        if name in renames or name in parameters or key == name or key not in bare:
            continue
        renames[name] = _next_free(key, renames, parameters)
    if not renames:
        return block
    out, position = [], 0
    for start, end, name in spans:
        out.append(block[position:start] + renames.get(name, name))
        position = end
    return "".join(out) + block[position:]


def _next_free(key: str, renames: Mapping[str, str], parameters: set[str]) -> str:
    used = set(renames.values()) | parameters
    index = 0
    while f"{key}{index}" in used:
        index += 1
    return f"{key}{index}"


def _local_name_spans(block: str) -> Iterable[tuple[int, int, str]]:
    """(start, end, name) of every name in function bodies that may be a local variable."""
    outer = 2 if block.startswith("class ") else 0  # a class's own lines, or a function's header
    offset = 0
    for line in block.splitlines(keepends=True):
        if len(line) - len(line.lstrip(" ")) > outer:
            for match in _STRING_OR_NAME.finditer(line):
                name = match.group(1)
                after = line[match.end():match.end() + 2]
                if name and not (after.startswith("=") and not after.startswith("==")):  # not a keyword argument
                    yield offset + match.start(1), offset + match.end(1), name
        offset += len(line)


# -- pickles (TorchScript's data.pkl and constants.pkl: protocol 2, no frames) -------------------
_STRING_OPS = {"BINUNICODE": (b"X", "<I"), "SHORT_BINUNICODE": (b"\x8c", "<B"), "BINUNICODE8": (b"\x8d", "<Q")}


def pickle_strings(data: bytes) -> Iterable[str]:
    """Class names (``module.name``) and strings of a pickle, in order."""
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            module, _, name = arg.partition(" ")
            yield f"{module}.{name}"
        elif opcode.name in _STRING_OPS:
            yield arg


def rewrite_pickle_strings(data: bytes, rewrite: Callable[[str], str]) -> bytes:
    """The pickle with ``rewrite`` applied to every class name and string; all else byte for byte."""
    ops = list(pickletools.genops(data))
    if any(opcode.name == "FRAME" for opcode, _, _ in ops):
        raise NormalizeError("framed pickles (protocol 4+) are not expected in TorchScript archives")
    out = bytearray()
    for index, (opcode, arg, pos) in enumerate(ops):
        end = ops[index + 1][2] if index + 1 < len(ops) else len(data)
        if opcode.name == "GLOBAL":
            module, _, name = arg.partition(" ")
            qualified = rewrite(f"{module}.{name}")
            if qualified.endswith("." + name):  # renames change namespaces, never the class name
                module = qualified[:-len(name) - 1]
            out += b"c" + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"
        elif opcode.name in _STRING_OPS:
            code, size = _STRING_OPS[opcode.name]
            encoded = rewrite(arg).encode("utf-8", "surrogatepass")
            if opcode.name == "SHORT_BINUNICODE" and len(encoded) > 255:
                code, size = _STRING_OPS["BINUNICODE"]
            out += code + struct.pack(size, len(encoded)) + encoded
        else:
            out += data[pos:end]
    return bytes(out)
