"""TorchScript and torch.export archives read, never loaded, for what would reach outside the model.

Loading is already running: ``torch.jit.load`` compiles the archive's ``code/`` and calls the
``__setstate__`` methods that code defines, and ``torch.export.load`` hands each symbolic size
expression of the program to ``sympy.sympify``, which evaluates it as Python. So an archive that
arrives from elsewhere (a package) is read as data first:

- TorchScript: every file under ``code/`` is parsed with ``ast`` (TorchScript prints Python
  syntax) and every dotted name is looked up: an operator that reads or writes files
  (``aten::from_file``, ``aten::save``) or lives outside torch's own namespaces (``ops.myns.op``),
  a custom class outside them (``torch.classes.myns.C``, in the code or in a pickle's globals),
  refuses the archive;
- torch.export: the program's JSON is walked; every node's target must be an operator of torch's own
  namespaces (the same two refused), a pure ``_operator`` or ``math`` function, or a ``torch.sym_*``
  helper; every ``expr_str`` must be a plain sympy expression (``Symbol('s0', integer=True)``,
  ``Add(...)``: known names, numbers, no attribute, no other call), and so must any guard code.

Each check returns the first problem as one sentence naming the operator, or None.
"""
from __future__ import annotations

import ast
import json
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from navbuild_rules.torch.loader import EXPORT_FILE, TORCHSCRIPT_FILE

# torch's own operator namespaces, less those that talk to other processes (c10d, symm_mem), load
# files (debugprims) or only test
TORCH_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "quantized_decomposed", "quantization", "mkldnn",
    "mkldnn_prepacked", "onednn", "prepacked", "profiler", "higher_order", "cuda", "sparse", "mkl", "rngprims",
    "_native", "inductor_prims"})
# operators of those namespaces that read or write a file (tests/rules/test_scan.py checks the list
# against every schema torch registers with a file-name argument)
FILE_OPERATORS = frozenset({"aten::from_file", "aten::save"})
MAX_CODE_BYTES = 64 << 20
MAX_JSON_BYTES = 1 << 30


class Unreadable(ValueError):
    pass


# -- TorchScript ----------------------------------------------------------------------------------
def scan_torchscript(folder: Path) -> str | None:
    path = Path(folder) / TORCHSCRIPT_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                if "/code/" in name and name.endswith(".py"):
                    problem = _code_problem(_read(archive, info, MAX_CODE_BYTES).decode("utf-8"), name)
                elif name.endswith(".pkl"):
                    problem = _pickle_problem(_read(archive, info, MAX_CODE_BYTES), name)
                else:
                    continue
                if problem:
                    return f"{TORCHSCRIPT_FILE}: {problem}"
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, Unreadable, EOFError) as exc:
        return f"{TORCHSCRIPT_FILE} cannot be read as a TorchScript archive ({type(exc).__name__}: {exc})"
    return None


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise Unreadable(f"{info.filename} holds {info.file_size} bytes")
    return archive.read(info)


def _code_problem(text: str, name: str) -> str | None:
    try:
        tree = ast.parse(text, filename=name)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"{name} is not TorchScript's code ({type(exc).__name__})"
    for chain in _dotted_names(tree):
        problem = _torchscript_name_problem(chain)
        if problem:
            return f"{name} calls {problem}"
    return None


def _dotted_names(tree: ast.AST) -> Iterator[list[str]]:
    """``torch.from_file`` as ``["torch", "from_file"]``, for every attribute chain on a name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            value: ast.AST = node
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                yield [value.id, *chain]


def _torchscript_name_problem(chain: list[str]) -> str | None:
    """What an operator or class reference of TorchScript's printed code reaches, when it must not."""
    if chain[0] == "ops" and len(chain) >= 3:
        return _operator_problem(chain[1], chain[2])
    if chain[0] == "torch" and len(chain) >= 4 and chain[1] == "ops":
        return _operator_problem(chain[2], chain[3])
    if chain[0] == "torch" and len(chain) >= 3 and chain[1] == "classes":
        return _class_problem(chain[2], ".".join(chain))
    if chain[0] == "__torch__" and len(chain) >= 4 and chain[1:3] == ["torch", "classes"]:
        return _class_problem(chain[3], ".".join(chain))
    if chain[0] == "torch" and len(chain) >= 2:  # torch.<op>: an aten operator as TorchScript prints it
        return _operator_problem("aten", chain[-1])
    return None


def _operator_problem(namespace: str, operator: str) -> str | None:
    qualified = f"{namespace}::{operator}"
    if qualified in FILE_OPERATORS:
        return f"operator {qualified}, which reads or writes a file"
    if namespace not in TORCH_NAMESPACES:
        return f"operator {qualified}, which is not one of torch's own (custom operators are refused)"
    return None


def _class_problem(namespace: str, name: str) -> str | None:
    if namespace not in TORCH_NAMESPACES:
        return f"custom class {name}, which is not one of torch's own (custom classes are refused)"
    return None


def _pickle_problem(data: bytes, name: str) -> str | None:
    """A pickle's globals: TorchScript's unpickler builds only its own types, but a ``torch.classes``
    global of another namespace would run that library's code."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                module, _, _ = arg.partition(" ")
                parts = module.split(".")
                if parts[:3] == ["__torch__", "torch", "classes"] and len(parts) >= 4:
                    problem = _class_problem(parts[3], arg.replace(" ", "."))
                    if problem:
                        return f"{name} holds a {problem}"
    except (ValueError, EOFError, IndexError, KeyError) as exc:
        return f"{name} is not a pickle ({type(exc).__name__})"
    return None


# -- torch.export ---------------------------------------------------------------------------------
OPERATOR_FUNCTIONS = frozenset({  # pure functions of Python's operator module a graph may call
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs", "and_", "or_",
    "xor", "invert", "lshift", "rshift", "eq", "ne", "lt", "le", "gt", "ge", "not_", "truth", "matmul", "index"})
TORCH_FUNCTIONS = frozenset({  # torch.<name> targets torch.export serializes by name (symbolic helpers)
    "sym_max", "sym_min", "sym_float", "sym_int", "sym_not", "sym_ite", "sym_sqrt", "sym_sum", "_sym_sqrt",
    "_check", "_check_is_size", "_assert", "_assert_async", "_assert_scalar"})
SYMPY_NAMES = frozenset({  # what sympy's srepr writes for shapes, and torch's sympy functions
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "Piecewise", "ExprCondPair", "BooleanTrue", "BooleanFalse",
    "true", "false", "oo", "zoo", "nan", "Infinity", "NegativeInfinity", "NaN", "One", "Zero", "NegativeOne",
    "Half", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity"})
_STRING_ARGUMENT = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")  # a symbol's name or a Float's digits
_GUARD_ATTRIBUTES = frozenset({"size", "stride", "storage_offset", "dim"})
_GUARD_CALLS = _GUARD_ATTRIBUTES | {"isnan"}  # L['x'].size()[0] == 4, math.isnan(L['y'])


def scan_export(folder: Path) -> str | None:
    path = Path(folder) / EXPORT_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            programs = [info for info in archive.infolist() if re.search(r"/models/[^/]+\.json$", info.filename)]
            if not programs:
                return f"{EXPORT_FILE} holds no program (models/*.json)"
            for info in programs:
                program = json.loads(_read(archive, info, MAX_JSON_BYTES), parse_constant=_no_constant)
                problem = _program_problem(program)
                if problem:
                    return f"{EXPORT_FILE}: {info.filename}: {problem}"
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, Unreadable, ValueError, RecursionError, EOFError) as exc:
        return f"{EXPORT_FILE} cannot be read as a torch.export archive ({type(exc).__name__}: {exc})"
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _program_problem(program: Any) -> str | None:
    if not isinstance(program, dict):
        return "the program is not a JSON object"
    for guard in program.get("guards_code") or []:
        if not isinstance(guard, str) or not _safe_expression(guard, guards=True):
            return f"guard code {str(guard)[:80]!r} is not a plain comparison of sizes (torch runs it as Python)"
    for where, value in _walk(program, ""):
        if where.endswith(".target") and isinstance(value, str):
            problem = _target_problem(value)
            if problem:
                return f"a node calls {problem}"
        elif where.endswith(".expr_str"):
            if not isinstance(value, str) or not _safe_expression(value):
                return (f"symbolic expression {str(value)[:80]!r} is not a plain sympy expression "
                        f"(torch.export.load evaluates it as Python)")
    return None


def _walk(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                here = f"{path}.{key}"
                yield here, child
                stack.append((child, here))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[]") for child in item)


def _target_problem(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] == "torch" and len(parts) >= 4 and parts[1] == "ops":
        return _operator_problem(parts[2], parts[3])
    if parts[0] == "torch" and len(parts) == 2 and parts[1] in TORCH_FUNCTIONS:
        return None
    if parts[0] == "_operator" and len(parts) == 2 and parts[1] in OPERATOR_FUNCTIONS:
        return None
    if parts[0] == "math" and len(parts) == 2 and parts[1].isidentifier() and not parts[1].startswith("_"):
        return None
    return f"{target}, which is not an operator of torch's own namespaces (only those are loaded)"


def _safe_expression(text: str, guards: bool = False) -> bool:
    """Only names, numbers and calls a sympy shape expression (or a size guard) is made of."""
    if len(text) > 100_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.keyword, ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _STRING_ARGUMENT.fullmatch(node.value):
                return False
            if not isinstance(node.value, (int, float, bool, str)):
                return False
        elif isinstance(node, ast.UnaryOp):
            continue
        elif isinstance(node, ast.Name):
            if node.id not in SYMPY_NAMES and not (guards and node.id in ("L", "math")):
                return False
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, (ast.Name, ast.Attribute)):
                return False
            if isinstance(node.func, ast.Attribute) and not (guards and node.func.attr in _GUARD_CALLS):
                return False
        elif guards and isinstance(node, (ast.Compare, ast.BoolOp, ast.BinOp, ast.Subscript, ast.cmpop,
                                          ast.boolop, ast.operator)):
            continue
        elif guards and isinstance(node, ast.Attribute):
            if node.attr not in _GUARD_CALLS and node.attr != "inf":
                return False
        else:
            return False
    return True
