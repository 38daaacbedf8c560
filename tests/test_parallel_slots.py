"""What -j may run at once: a profile runs alone (whatever else would be measured with it), and
GPU targets take one of ``--gpu-jobs`` slots. Real threads, the engine's own locks."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from navbuild.engine import workers
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE


def run_at_once(session, targets, seconds=0.05):
    """Run each target's slot-holding section in its own thread; returns what overlapped."""
    running: list[SimpleNamespace] = []
    overlaps: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def one(target):
        with workers.measuring_alone(session, target), workers.gpu_slot(session, target):
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
    """What the slots use of a Session, made as Session makes them."""
    return SimpleNamespace(gpu_slots=threading.BoundedSemaphore(gpu_jobs), measuring=workers.SharedOrAlone())


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
