"""Values the build could not honour are refused before anything builds (issue 21, items 4 and 5):
NaN tolerances, integers past their bounds, names too long for a file, nesting, duplicates, empty
strategy lists, and out or store folders that are, hold or sit inside a declared source."""
from __future__ import annotations

import pytest

from navbuild.engine.config import from_mapping

from .test_config import GOOD, root, run  # noqa: F401 (the fixture)

WITH_OUTPUTS = GOOD.replace('inputs = ["image"]', 'inputs = ["image"]\noutputs = ["logits"]')
PROJECT = 'name = "t"'

CASES = [
    ("rtol nan", GOOD + "\n[correctness]\nrtol = nan\n", "correctness.rtol: must be a finite tolerance, not nan"),
    ("atol inf", GOOD + "\n[correctness]\natol = inf\n", "correctness.atol: must be a finite tolerance"),
    ("per-output nan", WITH_OUTPUTS + "\n[models.cnn.correctness.outputs.logits]\natol = nan\n",
     "models.cnn.correctness.outputs.logits.atol: must be a finite tolerance"),
    ("huge max batch", GOOD.replace("max_batch_size = 16", "max_batch_size = 99999999999999999999"),
     "models.cnn.max_batch_size: must be from 0 to 2147483647"),
    ("huge timeout", GOOD.replace(PROJECT, PROJECT + "\ntimeout = 99999999999999999999"),
     "project.timeout: must be a number of seconds above 0 and at most 604800"),
    ("deep nesting", GOOD + "\nx = " + "[" * 5000 + "]" * 5000 + "\n", "nests tables or lists too deeply"),
    ("nesting past the limit", GOOD + "\n[models.cnn.targets.onnx]\nopset = " + "[" * 40 + "]" * 40 + "\n",
     "models: nests tables or lists more than 32 deep"),
    ("long project name", GOOD.replace(PROJECT, f'name = "{"n" * 300}"'),
     "project.name: is 300 bytes long, more than the 128"),
    ("long model name", GOOD.replace("[models.cnn", f"[models.{'m' * 200}"), "bytes long"),
    ("dynamic batch axis", GOOD + "\n[models.cnn.dynamic_axes]\nimage = {0 = \"batch\"}\n",
     "models.cnn.dynamic_axes.image.0: axis 0 is the batch dimension"),
    ("dynamic axis of an unknown input", GOOD + "\n[models.cnn.dynamic_axes]\nimgae = {2 = \"h\"}\n",
     "models.cnn.dynamic_axes.imgae: is not an input of the model (its inputs: image)"),
    ("dynamic axis past 63", GOOD + "\n[models.cnn.dynamic_axes]\nimage = {99 = \"h\"}\n",
     "models.cnn.dynamic_axes.image.99: must be from 1 to 63"),
    ("tolerance of an unknown output", WITH_OUTPUTS + "\n[models.cnn.correctness.outputs.logitz]\natol = 1.0\n",
     "models.cnn.correctness.outputs.logitz: is not an output of the model"),
    ("project tolerance of an unknown output", WITH_OUTPUTS + "\n[correctness.outputs.logitz]\natol = 1.0\n",
     "correctness.outputs.logitz: is an output of no model"),
    ("duplicate formats", GOOD.replace('formats = ["onnx"]', 'formats = ["onnx", "onnx"]'),
     "models.cnn.targets.formats: lists 'onnx' twice"),
    ("duplicate precisions", GOOD.replace('formats = ["onnx"]', 'formats = ["onnx"]\nprecisions = ["fp32", "fp32"]'),
     "models.cnn.targets.precisions: lists 'fp32' twice"),
    ("duplicate inputs", GOOD.replace('inputs = ["image"]', 'inputs = ["image", "image"]'),
     "models.cnn.inputs: lists 'image' twice"),
    ("no formats", GOOD.replace('formats = ["onnx"]', "formats = []"), "models.cnn.targets.formats: is empty"),
    ("no strategies", GOOD + "\n[profile]\nstrategies = []\n", "profile.strategies: is empty"),
    ("duplicate strategies", GOOD + '\n[profile]\nstrategies = ["min-latency", "min-latency"]\n',
     "profile.strategies: lists 'min-latency' twice"),
    ("budget of 1e12 s", GOOD + "\n[profile]\nbudget_s = 1e12\n", "profile.budget_s: must be a number of seconds"),
    ("budget nan", GOOD + "\n[profile]\nbudget_s = nan\n", "profile.budget_s: must be a number of seconds"),
    ("huge profile batch", GOOD + "\n[profile]\nbatch_sizes = [1, 99999999999999999999]\n",
     "profile.batch_sizes: must be from 1 to 2147483647"),
    ("huge window runs", GOOD + "\n[profile]\nmax_window_runs = 99999999999999999999\n",
     "profile.max_window_runs: must be from 0 to 2147483647"),
    ("nan stability", GOOD + "\n[profile]\nstability_pct = nan\n", "profile.stability_pct: must be a number"),
    ("format timeout", GOOD + "\n[models.cnn.targets.onnx]\ntimeout = 1e300\n",
     "models.cnn.targets.onnx.timeout: must be a number of seconds"),
    ("trusted key not base64", GOOD + '\n[trust]\nkeys = ["ed25519:abc"]\n',
     "trust.keys: 'ed25519:abc' is not base64 after ed25519:"),
    ("trusted key of another kind", GOOD + '\n[trust]\nkeys = ["ssh-rsa AAAA"]\n',
     "trust.keys: 'ssh-rsa AAAA' is not a key of the form ed25519:<base64>"),
    # out and store: never a declared source, its folder, or inside one (clean and gc delete there)
    ("out holds the sources", GOOD.replace(PROJECT, PROJECT + '\nout = "vision"'),
     "project.out: ", "holds the declared source 'vision/model.py'"),
    ("store holds the sources", GOOD.replace(PROJECT, PROJECT + '\nstore = "vision"'),
     "project.store: ", "holds the declared source 'vision/model.py'"),
    ("out is a source", GOOD.replace(PROJECT, PROJECT + '\nout = "vision/weights.pt"'),
     "project.out: ", "is the declared source 'vision/weights.pt'"),
    ("out is the config", GOOD.replace(PROJECT, PROJECT + '\nout = "navbuild.toml"'), "project.out: ", "is the config file"),
    ("store inside a declared folder", GOOD.replace('"vision/weights.pt"]', '"vision"]').replace(
        PROJECT, PROJECT + '\nstore = "vision/cache"'), "project.store: ", "sits inside the declared source 'vision'"),
    ("out under a glob's match", GOOD.replace('"vision/weights.pt"]', '"vision/*"]').replace(
        PROJECT, PROJECT + '\nout = "vision/__pycache__/out"'), "project.out: ", "sits inside vision/__pycache__"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_value_navbuild_cannot_honour_is_refused_with_its_key_and_a_fix(root, capsys, case):
    name, text, *messages = case
    if name == "out under a glob's match":
        (root / "vision" / "__pycache__").mkdir(exist_ok=True)
    code, output = run(root, text, capsys)
    assert code == 2, output
    for message in messages:
        assert message in output, output
    assert "fix:" in output and "Traceback" not in output, output
    assert not (root / "navbuild-out").exists() and not (root / ".navbuild").exists()
    assert (root / "vision" / "model.py").is_file()


def test_out_and_store_beside_the_sources_are_accepted(root):
    text = GOOD.replace(PROJECT, PROJECT + '\nout = "build/out"\nstore = "build/store"')
    (root / "navbuild.toml").write_text(text)
    from navbuild.engine.config import load

    project = load(root / "navbuild.toml")
    assert project.out == root / "build/out" and project.store == root / "build/store"


def test_the_python_mapping_is_checked_the_same(root):
    """OptimizeConfig and worker processes give a mapping: the same validator refuses the same values."""
    import tomllib

    mapping = tomllib.loads(GOOD + "\n[correctness]\nrtol = nan\n")
    with pytest.raises(Exception, match="correctness.rtol: must be a finite tolerance"):
        from_mapping(mapping, root)


@pytest.mark.parametrize("option,value,message", [
    ("budget_s", float("nan"), "must be a number of seconds"),
    ("max_window_runs", 2**40, "must be from 0 to 2147483647"),
    ("batch_sizes", [1, 1], "lists 1 twice"),
])
def test_the_profile_schema_holds_its_own_bounds(option, value, message):
    """measure/settings.py checks the numbers itself (the Python API builds it without navbuild.toml),
    and names the option."""
    from navbuild.measure.settings import ProfileConfig, SettingsError

    with pytest.raises(SettingsError, match=message) as caught:
        ProfileConfig.from_dict({option: value})
    assert caught.value.key == option
