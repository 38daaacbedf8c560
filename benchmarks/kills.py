"""Kills survived: a cold `navbuild all` SIGKILLed at N moments, each time followed by a plain re-run.

Each round copies the example models into a fresh project with an empty store, starts a cold build
(-j 2, so a kill can land while workers are busy), kills the navbuild process with SIGKILL after a
delay spread over the build, and runs `navbuild all` again. A round survives when the re-run exits
0, every portable digest equals an undisturbed build's, `navbuild fsck` finds the store sound and
no temp folder is left in `.navbuild/tmp`.

    PYTHONPATH=. python benchmarks/kills.py [--rounds 10] [--jobs 2]

Prints one line per round (when the kill landed, what the re-run built) and the count survived.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CONFIG  # noqa: E402  (the example CNN and encoder, two formats each)


def project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("vision", "text"):
        shutil.copytree(ROOT / "examples" / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "navbuild.toml").write_text(CONFIG)
    return folder / "navbuild.toml"


def navbuild(config: Path, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), *words],
                          capture_output=True, text=True, timeout=1800)


def digests(report: Path) -> dict[str, str]:
    return {name: record["digest"] for name, record in json.loads(report.read_text()).items()
            if record["status"] in ("built", "cached") and not name.endswith((".check", ".profile"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="navbuild-kills-") as folder:
        base = Path(folder)
        reference = project(base / "reference")
        started = time.perf_counter()
        result = navbuild(reference, "-q", "-j", str(args.jobs), "--json", str(base / "reference.json"))
        if result.returncode != 0:
            raise SystemExit(f"the undisturbed build failed:\n{result.stdout}{result.stderr}")
        cold_s = time.perf_counter() - started
        expected = digests(base / "reference.json")
        print(f"undisturbed cold build: {cold_s:.1f} s, {len(expected)} artifacts")
        survived = 0
        for round_ in range(args.rounds):
            config = project(base / f"round{round_}")
            delay = cold_s * (round_ + 0.5) / args.rounds
            build = subprocess.Popen([sys.executable, "-m", "navbuild.cli", "--config", str(config), "-q", "-j",
                                      str(args.jobs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            build.send_signal(signal.SIGKILL)
            build.wait()
            time.sleep(1.5)  # its workers notice their parent is gone and end
            report = config.parent / "rerun.json"
            rerun = navbuild(config, "-q", "--json", str(report))
            fsck = navbuild(config, "fsck")
            tmp = config.parent / ".navbuild" / "tmp"
            left = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
            ok = (rerun.returncode == 0 and digests(report) == expected and fsck.returncode == 0
                  and "the store is sound" in fsck.stdout and not left)
            survived += ok
            built = sum(r["status"] == "built" for r in json.loads(report.read_text()).values()) \
                if report.exists() else "?"
            print(f"round {round_ + 1}: killed at {delay:.1f} s; re-run exit {rerun.returncode}, {built} built; "
                  f"digests {'equal' if report.exists() and digests(report) == expected else 'DIFFER'}; "
                  f"fsck {'sound' if 'the store is sound' in fsck.stdout else 'NOT SOUND'}; "
                  f"temp left: {left or 'none'}", flush=True)
        print(f"kills survived: {survived}/{args.rounds}")
    return 0 if survived == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
