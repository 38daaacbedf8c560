"""What -j may run at once: a profile runs alone (whatever else would be measured with it), and
GPU targets take one of ``--gpu-jobs`` slots. Real threads, the scheduler's own ``Slots``."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE
from navbuild.engine.slots import Slots


def run_at_once(slots, targets, seconds=0.05):
    """Run each target's slot-holding section in its own thread; returns what overlapped."""
    running: list[SimpleNamespace] = []
    overlaps: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def one(target):
        with slots.hold(target):
            with lock:
                running.append(target)
                overlaps.append(tuple(sorted(t.name for t in running)))
            time.sleep(seconds)
            with lock:
                running.remove(target)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return overlaps


def session_with(gpu_jobs=1):
    """The slots a scheduler makes for ``--gpu-jobs gpu_jobs``."""
    return Slots(gpu_jobs)


def target(name, kind=ARTIFACT, device="cpu"):
    return SimpleNamespace(name=name, kind=kind, device=device)


def test_gpu_targets_wait_for_a_gpu_slot_whatever_j_says():
    gpu = [target(f"g{i}", device="cuda") for i in range(4)]
    assert max(map(len, run_at_once(session_with(1), gpu))) == 1
    mixed = gpu[:3] + [target("c1"), target("c2", CHECK)]
    most = max(map(len, run_at_once(session_with(2), mixed)))
    assert most >= 3  # two on the GPU, and the CPU targets alongside
    assert all(sum(name.startswith("g") for name in seen) <= 2 for seen in run_at_once(session_with(2), mixed))


def test_a_profile_never_runs_beside_anything():
    targets = [target(f"b{i}") for i in range(3)] + [target(f"p{i}", PROFILE) for i in range(3)] \
        + [target("c", CHECK), target("gp", PROFILE, "cuda")]
    for seen in run_at_once(session_with(2), targets):
        if any(name.startswith(("p", "gp")) for name in seen):
            assert len(seen) == 1, seen
    builds = run_at_once(session_with(), [target(f"b{i}") for i in range(4)])
    assert max(map(len, builds)) >= 2  # builds and checks still share the machine


def test_each_gpu_target_holds_its_own_slot_and_says_how_long_it_waited():
    slots, held, lock = Slots(2), [], threading.Lock()

    def one(target):
        with slots.hold(target) as grant:
            with lock:
                held.append(grant.gpu)
                assert held.count(grant.gpu) == 1, held  # no two targets on one slot at once
            time.sleep(0.05)
            with lock:
                held.remove(grant.gpu)
            grants.append(grant)

    grants: list = []
    threads = [threading.Thread(target=one, args=(target(f"g{i}", device="cuda"),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(g.gpu for g in grants) == [0, 0, 1, 1]
    assert sum(g.waited > 0.02 for g in grants) >= 2  # two of four waited for a slot to free
    with slots.hold(target("c")) as grant:
        assert grant.gpu is None
