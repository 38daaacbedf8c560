"""What may run at once (engine/slots.py): GPU targets spread over the cards, a GPU profile holds its
card alone while other cards go on, a CPU profile runs alone. Real threads, the scheduler's own
``Slots``, cards as the engine describes them (fake ones: no GPU is needed to lay them out)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from navbuild.engine.cards import Card
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE
from navbuild.engine.slots import Slots

CARDS = [Card(index, "NVIDIA H100 80GB HBM3") for index in range(3)]


def run_at_once(slots, targets, seconds=0.05):
    """Run each target's slot-holding section in its own thread; returns, each time one started,
    what ran then: (name, card index) pairs."""
    running: list[tuple[str, int | None]] = []
    overlaps: list[tuple[tuple[str, int | None], ...]] = []
    lock = threading.Lock()

    def one(target):
        with slots.hold(target) as grant:
            with lock:
                running.append((target.name, grant.gpu))
                overlaps.append(tuple(sorted(running, key=str)))
            time.sleep(seconds)
            with lock:
                running.remove((target.name, grant.gpu))

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return overlaps


def target(name, kind=ARTIFACT, device="cpu"):
    return SimpleNamespace(name=name, kind=kind, device=device)


def gpu(name, kind=ARTIFACT):
    return target(name, kind, "cuda")


def on_card(seen, card):
    return [name for name, index in seen if index == card]


def test_gpu_targets_spread_over_the_cards_one_each_by_default():
    seen = run_at_once(Slots(CARDS), [gpu(f"g{i}") for i in range(6)] + [target("c1"), target("c2", CHECK)])
    assert max(sum(index is not None for _, index in now) for now in seen) == 3  # every card busy at once
    for now in seen:
        for card in range(3):
            assert len(on_card(now, card)) <= 1, now  # one slot per card
    assert {index for now in seen for _, index in now} == {0, 1, 2, None}  # CPU targets hold no card
    assert max(len(now) for now in seen) >= 4  # CPU targets run beside the cards


def test_gpu_jobs_spread_over_the_cards():
    slots = Slots(CARDS[:2], gpu_jobs=3)
    assert [use.slots for use in slots.cards] == [2, 1] and slots.pinned == 3
    seen = run_at_once(slots, [gpu(f"g{i}") for i in range(6)])
    assert max(len(on_card(now, 0)) for now in seen) == 2 and max(len(on_card(now, 1)) for now in seen) == 1
    assert [use.slots for use in Slots(CARDS, gpu_jobs=1).cards] == [1]  # one card used of three
    unnamed = Slots([], gpu_jobs=2)  # no card known: the process's current device, two at a time
    assert unnamed.pinned == 0 and unnamed.cards[0].slots == 2


def test_a_gpu_profile_holds_its_card_alone_while_other_cards_go_on():
    targets = [gpu(f"b{i}") for i in range(6)] + [gpu(f"p{i}", PROFILE) for i in range(3)] + [gpu("c", CHECK)]
    seen = run_at_once(Slots(CARDS[:2], gpu_jobs=4), targets)
    beside_a_profile = False
    for now in seen:
        for name, card in now:
            if name.startswith("p"):
                assert on_card(now, card) == [name], now  # nothing else on its card
                beside_a_profile |= len(now) > 1
    assert beside_a_profile  # the other card built meanwhile


def test_a_cpu_profile_runs_alone_and_never_beside_a_gpu_profile():
    targets = [target(f"b{i}") for i in range(3)] + [target(f"p{i}", PROFILE) for i in range(2)] \
        + [gpu("gb"), gpu("gp", PROFILE), target("c", CHECK)]
    for now in run_at_once(Slots(CARDS), targets):
        if any(name.startswith("p") for name, _ in now):
            assert len(now) == 1, now
    builds = run_at_once(Slots(), [target(f"b{i}") for i in range(4)])
    assert max(map(len, builds)) >= 2  # builds and checks still share the machine


def test_a_waiting_profile_goes_before_new_builds_on_its_card():
    slots, order, lock = Slots(CARDS[:1]), [], threading.Lock()
    first_started = threading.Event()

    def one(t, hold=0.0):
        with slots.hold(t):
            with lock:
                order.append(t.name)
            first_started.set()
            time.sleep(hold)

    build = threading.Thread(target=one, args=(gpu("b1"), 0.2))
    build.start()
    first_started.wait()
    profile = threading.Thread(target=one, args=(gpu("p", PROFILE),))
    profile.start()
    time.sleep(0.05)  # the profile waits for the card: b2 comes after it
    later = threading.Thread(target=one, args=(gpu("b2"),))
    later.start()
    for thread in (build, profile, later):
        thread.join()
    assert order == ["b1", "p", "b2"]


def test_each_gpu_target_says_which_card_and_how_long_it_waited():
    slots, grants, lock = Slots(CARDS[:2]), [], threading.Lock()

    def one(t):
        with slots.hold(t) as grant:
            time.sleep(0.05)
            with lock:
                grants.append(grant)

    threads = [threading.Thread(target=one, args=(gpu(f"g{i}"),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(g.gpu for g in grants) == [0, 0, 1, 1]
    assert all(g.card.name == "NVIDIA H100 80GB HBM3" for g in grants)
    assert sum(g.waited > 0.02 for g in grants) >= 2  # two of four waited for a card to free
    with slots.hold(target("c")) as grant:
        assert grant.gpu is None and grant.card is None
