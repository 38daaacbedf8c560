"""A model that prints megabytes a call leaves a capped build log (issue 21, item 6): its head and
tail kept, the cut said between them, in the store and in navbuild-out."""
from __future__ import annotations

from navbuild.engine.log_cap import LOG_HEAD, LOG_TAIL, capped

from .tiny import make_tiny_project

LOUD = '''

class Loud(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = build_model()

    def forward(self, x):
        print("x" * 2_000_000)  # 2 MB a call: a debug print left in
        return self.inner(x)


def build_loud():
    return Loud().eval()
'''


def test_a_loud_model_leaves_a_capped_log(tmp_path):
    project = make_tiny_project(tmp_path / "loud", precisions='["fp32"]')
    (project.root / "model.py").write_text((project.root / "model.py").read_text() + LOUD)
    project.config.write_text(project.config.read_text().replace("model.py:build_model", "model.py:build_loud"))
    records = project.build("mlp:reference")
    assert records["mlp:reference"]["status"] == "built"
    log = (project.root / "navbuild-out" / "mlp" / "reference" / "build.log").read_text()
    assert len(log) < LOG_HEAD + LOG_TAIL + 500  # the reference ran the model 4 times: 8 MB printed
    assert log.startswith("navbuild: building mlp:reference")
    assert "bytes of this log were cut here; its first 262144 and last 1048576 are kept" in log
    assert log.rstrip().splitlines()[-1].startswith("navbuild: mlp:reference done in")
    stored = sorted((project.root / ".navbuild" / "objects").glob("*/*"), key=lambda p: p.stat().st_size)
    assert stored[-1].stat().st_size < LOG_HEAD + LOG_TAIL + 500


def test_capped_keeps_short_text_and_says_the_cut():
    assert capped("short") == "short"
    text = capped("a" * 10 + "b" * 100 + "c" * 10, head=10, tail=10)
    assert text.startswith("a" * 10) and text.endswith("c" * 10)
    assert "100 characters of this log were cut here" in text
