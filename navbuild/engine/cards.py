"""The GPUs a local run builds on, and how a worker process is pinned to one of them.

A run builds its GPU targets on the visible cards (``fingerprint.gpus``) of one type: the first
visible card's. A key holds the card type, so every card of that type builds and measures the
same keys; a card of another type would build other keys for the same targets, so a machine of
mixed cards leaves the others idle, says so, and ``--gpu-type`` (``narrow_to_type``) or
``CUDA_VISIBLE_DEVICES`` chooses them instead.

A worker is pinned when it is started, never after: its environment names its card
(``CUDA_VISIBLE_DEVICES`` with nvidia-smi's index, in the PCI bus order that nvidia-smi and NVML
use), so CUDA in that process sees that card alone, as its device 0. Workers of CPU targets see
no card at all while cards are pinned: a framework that takes memory on every GPU it sees (as
TensorFlow does) cannot take it from a card that a build or a profile holds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from navbuild.engine import fingerprint

ORDER_ENV = "CUDA_DEVICE_ORDER"
PCI_ORDER = "PCI_BUS_ID"  # CUDA's own default orders the fastest first; nvidia-smi's index is the bus order


@dataclass(frozen=True)
class Card:
    """One GPU: ``index`` as nvidia-smi numbers it (None: the process's current device, which
    navbuild cannot name, so it pins nothing), ``name`` its type's name."""

    index: int | None
    name: str

    def environment(self) -> dict[str, str]:
        """What a worker's environment sets to see this card alone."""
        if self.index is None:
            return {}
        return {fingerprint.VISIBLE_ENV: str(self.index), ORDER_ENV: PCI_ORDER}

    @property
    def label(self) -> str:
        return "current GPU" if self.index is None else f"GPU {self.index}"


class CardError(ValueError):
    """``--gpu-type`` names no card of this machine (a usage error: exit 2)."""


NO_CARD = {fingerprint.VISIBLE_ENV: ""}  # the environment of a CPU target's worker while cards are pinned


def for_run() -> tuple[list[Card], list[Card]]:
    """The cards this run builds on (those of the first visible card's type), and the visible
    cards of other types that it leaves idle."""
    found = fingerprint.gpus()
    if not found:
        return [], []
    first = fingerprint.card_type(found[0])
    used = [_card(g) for g in found if fingerprint.card_type(g) == first]
    return used, [_card(g) for g in found if fingerprint.card_type(g) != first]


def _card(gpu: dict) -> Card:
    return Card(gpu.get("index"), str(gpu.get("name")))


def idle_text(used: list[Card], idle: list[Card]) -> str:
    """The warning of a machine of mixed cards."""
    names = ", ".join(f"{card.label} ({card.name})" for card in idle)
    return (f"GPU targets run on the {used[0].name} cards ({', '.join(c.label for c in used)}): keys hold the card "
            f"type, so a run builds for one type; {names} stay idle (--gpu-type or CUDA_VISIBLE_DEVICES "
            f"chooses them)")


def narrow_to_type(gpu_type: str) -> list[Card]:
    """``--gpu-type TYPE`` on this machine: from now on this process (and the workers it starts)
    sees only the visible cards whose name holds ``TYPE`` (``H100``, ``A100``), the first one's
    type. Raises CardError naming the visible cards when none matches. Called before any key is
    computed (it changes the first visible card)."""
    found = fingerprint.gpus()
    matching = [g for g in found if gpu_type.lower() in str(g.get("name", "")).lower() and g.get("index") is not None]
    if not matching:
        seen = ", ".join(f"{g.get('index')}: {g.get('name')}" for g in found) or "none"
        raise CardError(f"--gpu-type {gpu_type}: no visible GPU of that type (visible: {seen})")
    first = fingerprint.card_type(matching[0])
    chosen = [g for g in matching if fingerprint.card_type(g) == first]
    os.environ[fingerprint.VISIBLE_ENV] = ",".join(str(g["index"]) for g in chosen)
    os.environ[ORDER_ENV] = PCI_ORDER
    fingerprint.gpus.cache_clear()
    return [_card(g) for g in chosen]
