"""Artifacts read as data before anything loads them (issue 21, item 2): TorchScript code, torch.export
programs and ONNX files that would read or write files, run a process, call a custom operator or
evaluate Python while loading are refused with what they reach named; honest exports pass."""
from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from navbuild_rules.onnx.scan import scan_onnx
from navbuild_rules.torch.scan import FILE_OPERATORS, TORCH_NAMESPACES, scan_export, scan_torchscript


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.inner(x)


class FromFile(torch.nn.Module):
    """The issue's wrapper: the real model, and a file outside the project overwritten on every call."""

    def __init__(self, victim: str):
        super().__init__()
        self.inner, self.victim = torch.nn.Linear(4, 2), victim

    def forward(self, x):
        shared = torch.from_file(self.victim, shared=True, size=4)
        shared.fill_(66.0)
        return self.inner(x) + shared.sum() * 0


def save_torchscript(module, folder: Path, trace: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(module, torch.randn(2, 4)) if trace else torch.jit.script(module)
    scripted.save(str(folder / "model.pt"))
    return folder


def rewrite_code(folder: Path, change) -> None:
    """The archive's code files edited as a hand-crafted package would be."""
    path = folder / "model.pt"
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    for name in entries:
        if "/code/" in name and name.endswith(".py"):
            entries[name] = change(entries[name].decode()).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_honest_torchscript_passes(tmp_path):
    assert scan_torchscript(save_torchscript(Linear(), tmp_path / "trace")) is None
    assert scan_torchscript(save_torchscript(Linear(), tmp_path / "script", trace=False)) is None


def test_a_file_writing_wrapper_is_refused_with_the_operator_named(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(bytes(16))
    folder = save_torchscript(FromFile(str(victim)), tmp_path / "evil")
    victim.write_bytes(bytes(16))  # tracing ran it once
    problem = scan_torchscript(folder)
    assert problem and "operator aten::from_file, which reads or writes a file" in problem
    assert victim.read_bytes() == bytes(16)  # scanning ran nothing


@pytest.mark.parametrize("code,named", [
    ("torch.save(x, \"/tmp/navbuild-x\")", "aten::save"),
    ("torch.ops.aten.from_file(\"/etc/passwd\", False, 4)", "aten::from_file"),
    ("ops.myns.evil(x)", "operator myns::evil, which is not one of torch's own"),
    ("ops.c10d.broadcast_(x)", "operator c10d::broadcast_"),
    ("torch.classes.myns.Runner()", "custom class torch.classes.myns.Runner"),
])
def test_hand_written_code_is_refused(tmp_path, code, named):
    folder = save_torchscript(Linear(), tmp_path / "crafted")
    rewrite_code(folder, lambda text: text.replace("    return ", f"    _x = {code}\n    return ", 1))
    problem = scan_torchscript(folder)
    assert problem and named in problem, problem


def test_code_that_is_not_torchscript_is_refused(tmp_path):
    folder = save_torchscript(Linear(), tmp_path / "broken")
    rewrite_code(folder, lambda text: text + "\n  def (:\n")
    assert "is not TorchScript's code" in scan_torchscript(folder)


def test_the_file_operators_are_every_file_taking_schema_of_torchs_namespaces():
    """A torch upgrade that registers another operator with a file-name argument fails here."""
    found = set()
    for schema in torch._C._jit_get_all_schemas():
        namespace = schema.name.split("::")[0]
        if namespace in TORCH_NAMESPACES and any(
                "str" in str(argument.type) and re.search("file|path", argument.name) for argument in schema.arguments):
            found.add(schema.name)
    assert found <= FILE_OPERATORS, found - FILE_OPERATORS


# -- torch.export --------------------------------------------------------------------------------
def export(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(Linear(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(folder / "model.pt2"))
    return folder


def edit_program(folder: Path, change) -> None:
    path = folder / "model.pt2"
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in entries if n.endswith("models/model.json"))
    program = json.loads(entries[name])
    change(program)
    entries[name] = json.dumps(program).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    path.write_bytes(buffer.getvalue())


def _first_expr(program):
    for value in program["graph_module"]["graph"]["tensor_values"].values():
        for size in value["sizes"]:
            if "as_expr" in size:
                return size["as_expr"]
    raise AssertionError("no symbolic size")


def test_honest_export_passes(tmp_path):
    assert scan_export(export(tmp_path / "ok")) is None


def _inject(program):
    expr = _first_expr(program)
    expr["expr_str"] = "__import__('os').system('touch /tmp/navbuild-pwned') or " + expr["expr_str"]


def _node_target(target):
    def change(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return change


@pytest.mark.parametrize("change,named", [
    (_inject, "is not a plain sympy expression (torch.export.load evaluates it as Python)"),
    (lambda p: _first_expr(p).update(expr_str="S(\"__import__('os')\")"), "is not a plain sympy expression"),
    (_node_target("torch.ops.aten.from_file.default"), "aten::from_file, which reads or writes a file"),
    (_node_target("torch.ops.myns.evil.default"), "myns::evil, which is not one of torch's own"),
    (_node_target("torch.os.system"), "torch.os.system, which is not an operator of torch's own namespaces"),
    (_node_target("_operator.call"), "_operator.call"),
    (lambda p: p.update(guards_code=["__import__('os').system('x') == 0"]), "guard code"),
])
def test_a_crafted_program_is_refused(tmp_path, change, named):
    folder = export(tmp_path / "crafted")
    edit_program(folder, change)
    problem = scan_export(folder)
    assert problem and named in problem, problem


def test_size_guards_pass(tmp_path):
    folder = export(tmp_path / "guards")
    edit_program(folder, lambda p: p.update(guards_code=["L['x'].size()[0] <= 16", "math.isnan(L['y']) == False"]))
    assert scan_export(folder) is None


# -- ONNX ------------------------------------------------------------------------------------------
def onnx_model(folder: Path, *, location: str | None = None, domain: str = "", local_function: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    if location is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=location)
    node = helper.make_node("Relu" if not domain else "Evil", ["x"], ["r"], domain=domain)
    add = helper.make_node("Add", ["r", "w"], ["y"])
    graph = helper.make_graph([node, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    functions = []
    if local_function:
        functions = [helper.make_function(domain, "Evil", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                                          [helper.make_opsetid("", 17)])]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder


def test_honest_onnx_passes(tmp_path):
    assert scan_onnx(onnx_model(tmp_path / "ok")) is None
    folder = onnx_model(tmp_path / "external", location="model.onnx.data")
    (folder / "model.onnx.data").write_bytes(bytes(16))
    assert scan_onnx(folder) is None  # weights in a file of the artifact itself
    assert scan_onnx(onnx_model(tmp_path / "function", domain="pkg.local", local_function=True)) is None


@pytest.mark.parametrize("kwargs,named", [
    ({"location": "../../../etc/passwd"}, "keeps its data in '../../../etc/passwd', which is not a file of the artifact"),
    ({"location": "/etc/passwd"}, "keeps its data in '/etc/passwd'"),
    ({"location": "model.onnx.data"}, "which is not a file of the artifact"),  # named, but not shipped
    ({"domain": "com.evil"}, "imports operator domain 'com.evil'"),
])
def test_onnx_reaching_outside_is_refused(tmp_path, kwargs, named):
    problem = scan_onnx(onnx_model(tmp_path / "bad", **kwargs))
    assert problem and named in problem, problem


def test_a_custom_node_without_its_import_is_refused(tmp_path):
    folder = onnx_model(tmp_path / "node", domain="com.evil")
    model = onnx.load(str(folder / "model.onnx"))
    del model.opset_import[1]
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    assert "uses operator com.evil::Evil, which is not of a standard domain" in scan_onnx(folder)


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"PK\x03\x04 a TorchScript zip, say")
    assert "cannot be read as an ONNX model" in scan_onnx(tmp_path)
