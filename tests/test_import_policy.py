"""Which of a package's artifacts `build --from` may take (issue 21, item 1): an unsigned package
never brings what loading runs, what cannot be recomputed or what no scan reads; a package signed
by a trusted key may bring a TensorRT plan (device-bound, keyed by this GPU's fingerprint)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from navbuild.engine.graph import ARTIFACT
from navbuild.deploy.package_import import _not_importable
from navbuild.rule import ROLE_REFERENCE, Rule


def _build(ctx):
    return None


RULES = {
    "plan": Rule(name="trt", version="1", build=_build, loads_code=True, device_bound=True, normalized=False,
                 canonical_digest=lambda folder: "0" * 32),
    "canonical": Rule(name="c", version="1", build=_build, normalized=False, canonical_digest=lambda folder: "0" * 32),
    "unscanned": Rule(name="recipe", version="1", build=_build),
    "scanned": Rule(name="onnx", version="1", build=_build, scan=lambda folder: None),
    "reference": Rule(name="reference", version="1", build=_build, role=ROLE_REFERENCE),
}


def session_with(rule: Rule) -> SimpleNamespace:
    return SimpleNamespace(graph=SimpleNamespace(targets={"m:t": SimpleNamespace(kind=ARTIFACT, rule=rule)}))


@pytest.mark.parametrize("name,unsigned,signed", [
    ("plan", "outputs carry code that loading runs", None),
    ("canonical", "its digest cannot be recomputed from its files", None),
    ("unscanned", "declares no scan that reads its files before they are loaded", None),
    ("scanned", None, None),
    ("reference", "computed here", "computed here"),
])
def test_what_a_package_may_bring_unsigned_and_signed(name, unsigned, signed):
    session = session_with(RULES[name])
    for trusted, expected in ((False, unsigned), (True, signed)):
        why = _not_importable(session, "m:t", {"key": "0" * 32}, trusted)
        assert (why is None) if expected is None else (expected in why), (name, trusted, why)
    if unsigned and not signed:
        assert "a package signed by a key in [trust] keys may bring it" in _not_importable(
            session, "m:t", {"key": "0" * 32}, False)
