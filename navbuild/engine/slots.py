"""What may run beside what on this machine: one object that a target's action asks before it starts.

- A GPU target (one bound to a CUDA device: its build, check or profile) runs on one card. The
  run's ``--gpu-jobs`` slots (default: one per card) are spread over its cards; a build or a
  check takes a slot on the least busy card, so a machine of eight cards builds eight targets at
  once. The ``Grant`` names the card: the worker that runs the target is pinned to it.
- A GPU profile holds its card alone: no other target starts on that card until it ends, and
  until it starts, so that a busy card drains for it (a profile waiting for a card goes before new
  builds there). Builds, checks and profiles on other cards go on: they share no card with it.
- A CPU profile runs alone, whatever it would share would be measured with it: no other target,
  GPU targets included (a GPU build keeps a CPU core busy, a compiler keeps several). Builds and
  checks share the machine with each other, and a waiting CPU profile goes before new ones
  (``SharedOrAlone``, a readers-writer lock that starves no one).
- A GPU profile needs, of the CPU, the thread that launches its kernels: it waits for a CPU
  profile to end (and a CPU profile for it), and otherwise shares the CPU with what runs on other
  cards and with ``-j`` CPU targets. docs/distributed.md says why, and how to keep a core for it.

``Slots.hold(target)`` waits for all of that and yields a ``Grant``: how long the target waited,
and the card it holds.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from navbuild.engine.cards import Card
from navbuild.engine.graph import PROFILE


def on_gpu(target: Any) -> bool:
    """A target bound to a CUDA device: its action needs a card."""
    return str(target.device).startswith("cuda")


@dataclass
class Grant:
    """What a target got: ``waited`` seconds for a card or for a profile to end, and the ``card`` it
    holds (None for a CPU target)."""

    waited: float = 0.0
    card: Card | None = None

    @property
    def gpu(self) -> int | None:
        """The card's index as nvidia-smi numbers it; None for a CPU target or an unnamed card."""
        return self.card.index if self.card is not None else None


@dataclass
class _CardUse:
    card: Card | None
    slots: int
    running: int = 0
    reserved: bool = False  # a profile waits for it to drain, or holds it


class Slots:
    """``cards``: the cards GPU targets run on (none known: one unnamed card, the process's current
    device); ``gpu_jobs``: GPU targets at once, spread over the cards (default: one per card)."""

    def __init__(self, cards: list[Card] | None = None, gpu_jobs: int | None = None) -> None:
        self.measuring = SharedOrAlone()
        known: list[Card | None] = list(cards or []) or [None]
        jobs = max(1, gpu_jobs or len(known))
        shares = [jobs // len(known) + (1 if i < jobs % len(known) else 0) for i in range(len(known))]
        self.cards = [_CardUse(card, share) for card, share in zip(known, shares) if share]
        self.cards_changed = threading.Condition()

    @property
    def pinned(self) -> int:
        """The slots on cards that a worker can be pinned to (named cards)."""
        return sum(use.slots for use in self.cards if use.card is not None and use.card.index is not None)

    @contextlib.contextmanager
    def hold(self, target: Any) -> Iterator[Grant]:
        """``target`` needs ``kind`` and ``device`` (an engine Target, or anything shaped like one)."""
        started = time.perf_counter()
        gpu = on_gpu(target)
        alone = target.kind == PROFILE and not gpu
        with self.measuring.alone() if alone else self.measuring.shared():
            if not gpu:
                yield Grant(waited=time.perf_counter() - started)
                return
            with self._card(profile=target.kind == PROFILE) as use:
                yield Grant(waited=time.perf_counter() - started, card=use.card)

    @contextlib.contextmanager
    def _card(self, profile: bool) -> Iterator[_CardUse]:
        with self.cards_changed:
            if profile:
                use = self._reserve()
            else:
                self.cards_changed.wait_for(lambda: self._least_busy() is not None)
                use = self._least_busy()
                use.running += 1
        try:
            yield use
        finally:
            with self.cards_changed:
                use.running -= 1
                if profile:
                    use.reserved = False
                self.cards_changed.notify_all()

    def _reserve(self) -> _CardUse:
        """A profile's card: the least busy one no other profile holds; new targets stay off it
        while it drains, then the profile has it alone. Called holding ``cards_changed``."""
        self.cards_changed.wait_for(lambda: any(not use.reserved for use in self.cards))
        use = min((u for u in self.cards if not u.reserved), key=lambda u: (u.running, self.cards.index(u)))
        use.reserved = True
        self.cards_changed.wait_for(lambda: use.running == 0)
        use.running = 1
        return use

    def _least_busy(self) -> _CardUse | None:
        free = [use for use in self.cards if not use.reserved and use.running < use.slots]
        return min(free, key=lambda u: (u.running, self.cards.index(u))) if free else None


class SharedOrAlone:
    """A readers-writer lock that lets a waiting profile in before new builds (no starvation)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.sharing = 0
        self.alone_now = False
        self.alone_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self.changed:
            self.changed.wait_for(lambda: not self.alone_now and not self.alone_waiting)
            self.sharing += 1
        try:
            yield
        finally:
            with self.changed:
                self.sharing -= 1
                self.changed.notify_all()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self.changed:
            self.alone_waiting += 1
            self.changed.wait_for(lambda: not self.alone_now and not self.sharing)
            self.alone_waiting -= 1
            self.alone_now = True
        try:
            yield
        finally:
            with self.changed:
                self.alone_now = False
                self.changed.notify_all()
