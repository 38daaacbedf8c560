"""The cards a process may use, and what a key holds of one (engine/fingerprint.py, engine/cards.py),
on fake cards (``NAVBUILD_FAKE_GPUS``, tests only)."""
from __future__ import annotations

import json
import os

import pytest

from navbuild.engine import actions, cards, fingerprint

H100 = {"name": "NVIDIA H100 80GB HBM3", "capability": "9.0"}
H200 = {"name": "NVIDIA H200", "capability": "9.0"}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "capability": "8.0"}


@pytest.fixture
def machine(monkeypatch):
    """``machine(cards, visible)``: this process sees these fake cards, through CUDA_VISIBLE_DEVICES."""
    for name in (fingerprint.VISIBLE_ENV, cards.ORDER_ENV, fingerprint.OVERRIDE_ENV, "NAVBUILD_NO_GPU"):
        monkeypatch.delenv(name, raising=False)

    def set_up(found, visible=None):
        monkeypatch.setenv(fingerprint.FAKE_GPUS_ENV, json.dumps(found))
        if visible is None:
            monkeypatch.delenv(fingerprint.VISIBLE_ENV, raising=False)
        else:
            monkeypatch.setenv(fingerprint.VISIBLE_ENV, visible)
        fingerprint.gpus.cache_clear()

    yield set_up
    monkeypatch.undo()
    fingerprint.gpus.cache_clear()


def test_cuda_visible_devices_names_the_cards_a_process_sees(machine):
    machine([H100, H100, H200, A100], "2,0")
    assert [g["index"] for g in fingerprint.gpus()] == [2, 0]
    machine([H100, H100, H200, A100], "GPU-fake-3")  # a uuid, or a unique prefix of one
    assert [g["name"] for g in fingerprint.gpus()] == [A100["name"]]
    machine([H100, H100], "1,-1,0")  # CUDA stops at the first entry that names no card
    assert [g["index"] for g in fingerprint.gpus()] == [1]
    machine([H100, H100], "")
    assert fingerprint.gpus() == [] and not fingerprint.gpu_present()
    machine([H100, H100], "MIG-4f2a")  # a MIG instance: the current device, of no index
    assert [(g["index"], g["name"]) for g in fingerprint.gpus()] == [(None, H100["name"])]
    assert cards.for_run()[0] == [cards.Card(None, H100["name"])]
    assert cards.Card(None, H100["name"]).environment() == {}  # nothing to pin it by


def test_a_key_holds_the_card_type_never_the_card(machine):
    machine([H100, H100, H200], "0")
    first = fingerprint.device("cuda")
    assert first["gpu"] == {"name": H100["name"], "capability": "9.0", "driver": "fake", "cuda": "12.8"}
    machine([H100, H100, H200], "1")
    assert fingerprint.device("cuda") == first  # card 1 is card 0's type: the same keys
    machine([H100, H100, H200], "2")
    assert fingerprint.device("cuda")["gpu"]["name"] == H200["name"]  # another type: other keys


def test_a_run_builds_on_the_cards_of_the_first_ones_type(machine):
    machine([H100, H200, H100, H200])
    used, idle = cards.for_run()
    assert [c.index for c in used] == [0, 2] and [c.index for c in idle] == [1, 3]
    assert "GPU 1 (NVIDIA H200), GPU 3 (NVIDIA H200) stay idle" in cards.idle_text(used, idle)
    assert used[1].environment() == {"CUDA_VISIBLE_DEVICES": "2", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    machine([H100, H200, H100, H200], "3,1,2")
    assert [c.index for c in cards.for_run()[0]] == [3, 1]  # the first visible card's type


def test_gpu_type_narrows_what_this_process_and_its_workers_see(machine):
    machine([H100, H200, H100, H200])
    assert [c.index for c in cards.narrow_to_type("h200")] == [1, 3]
    assert os.environ[fingerprint.VISIBLE_ENV] == "1,3" and os.environ[cards.ORDER_ENV] == "PCI_BUS_ID"
    assert fingerprint.device("cuda")["gpu"]["name"] == H200["name"]
    with pytest.raises(cards.CardError, match=r"no visible GPU of that type \(visible: 1: NVIDIA H200"):
        cards.narrow_to_type("A100")


def test_a_worker_of_another_card_type_refuses_the_key(machine):
    machine([H100, H200], "0")
    material = {"device_fingerprint": fingerprint.device("cuda")}
    actions._same_card_type(material)  # its own type: fine
    machine([H100, H200], "1")
    with pytest.raises(RuntimeError, match="sees NVIDIA H200 .* computed for NVIDIA H100"):
        actions._same_card_type(material)
    actions._same_card_type({"device_fingerprint": {"override": "pinned fleet"}})  # nothing to compare
