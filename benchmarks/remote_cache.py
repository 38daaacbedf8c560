"""A fresh clone's ``navbuild all`` with a warm remote cache versus a cold build of the same project.

    python benchmarks/remote_cache.py                      # the repository's navbuild.toml, all targets
    python benchmarks/remote_cache.py --targets cnn:onnx   # a selection
    python benchmarks/remote_cache.py --plain              # also a cold build with no remote cache at all
    python benchmarks/remote_cache.py --url http://host:8080/navbuild   # an existing cache server

The repository (its committed HEAD) is cloned into fresh folders, each with its own store. The
first clone builds cold against an empty cache (and uploads); the second builds with the cache warm
and should restore everything and build nothing. The cache is Debian's nginx with WebDAV PUT on a
loopback port when nginx is installed (as in the tests), else a file:// folder (said in the output).
Each figure is the wall time of the ``navbuild`` process, as a user sees it. Goal: ratio <= 0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(clone: Path, words: list[str], url: str | None) -> tuple[float, dict[str, dict]]:
    report = clone / "benchmark-run.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAVBUILD_REMOTE_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "navbuild.cli", "-q", "--json", str(report), *words]
    if url:
        command += ["--remote-cache", url]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"navbuild {' '.join(words)} failed in {clone}:\n{done.stdout}\n{done.stderr}")
    if "remote cache" in done.stderr:
        print(done.stderr.strip(), file=sys.stderr)
    return seconds, json.loads(report.read_text())


def clone(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(into)], check=True)
    return into


def counts(records: dict[str, dict]) -> str:
    tally: dict[str, int] = {}
    for record in records.values():
        label = "remote" if record.get("origin") == "remote" else record["status"]
        tally[label] = tally.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(tally.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="*", default=["all"], help="what to build (default: all)")
    parser.add_argument("--url", help="an existing remote cache (default: nginx on a loopback port)")
    parser.add_argument("--plain", action="store_true", help="also time a cold build with no remote cache")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="navbuild-remote-bench-") as tmp:
        work = Path(tmp)
        server = None
        url = args.url
        if url is None:
            from tests.remote_util import NGINX, NginxCache

            if NGINX is not None:
                server = NginxCache(work / "nginx").start()
                url, kind = server.url, f"nginx ({NGINX}) with WebDAV on 127.0.0.1"
            else:
                url, kind = (work / "cache").as_uri(), "a file:// folder (nginx is not installed)"
        else:
            kind = "the given server"
        try:
            print(f"remote cache: {kind}")
            print(f"targets: {' '.join(args.targets)}")
            if args.plain:
                plain, records = run(clone(work / "plain"), args.targets, None)
                print(f"cold build, no remote cache:        {plain:8.2f} s  ({counts(records)})")
            cold, records = run(clone(work / "cold"), args.targets, url)
            print(f"cold build, uploading to the cache: {cold:8.2f} s  ({counts(records)})")
            warm, records = run(clone(work / "warm"), args.targets, url)
            print(f"fresh clone, warm remote cache:     {warm:8.2f} s  ({counts(records)})")
            print(f"ratio warm / cold: {warm / cold:.3f}x (goal <= 0.1x)")
            if args.plain:
                print(f"ratio warm / cold without a cache: {warm / plain:.3f}x; "
                      f"upload overhead of the cold build: {cold - plain:+.2f} s")
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
