"""The README's set-up figures, measured as a new user meets them: a fresh clone, a fresh virtual
environment, ``pip install -e '.[EXTRA]'`` timed, the environment's size, and the test suite's time
in it (the README's second command), quiet or beside busy processes. Prints one table, dated.

    python benchmarks/setup_figures.py                      # .[test], quiet
    python benchmarks/setup_figures.py --extra ci --busy 2  # what .ci/run installs, beside 2 busy processes
    python benchmarks/setup_figures.py --no-tests           # install time and size only

It clones this checkout's HEAD (``--source`` another path or URL) into a temporary folder, which it
removes at the end (``--keep`` keeps it). pip uses its cache as a user's would (``--no-cache`` for
a cold one); on the machines this project is developed on, torch and torchvision are taken from
the wheels on disk (pip's ``find-links``), so no figure includes a 5 GB download.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int, str]:
    """Seconds, exit code and output of ``command`` (the output also kept in ``log``)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return time.perf_counter() - started, code, log.read_text(errors="replace")


def size_of(path: Path) -> str:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return f"{total / 1e9:.1f} GB"


def busy(count: int) -> list[subprocess.Popen]:
    """Processes that keep a core each busy, as other work on a shared machine does."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def test_result(output: str) -> str:
    """pytest's closing line: ``651 passed, 34 skipped in 786.12s``."""
    lines = [line.strip("= ") for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1] if lines else "no result line (see the log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", default="test", help="the extra installed (test, ci, examples,test, ...)")
    parser.add_argument("--busy", type=int, default=0, metavar="N", help="busy processes beside the measurement")
    parser.add_argument("--source", default=str(REPO), help="what to clone (default: this checkout)")
    parser.add_argument("--no-tests", action="store_true", help="measure the install only")
    parser.add_argument("--no-cache", action="store_true", help="pip without its cache (every wheel fetched)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its environment")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="navbuild-setup-"))
    clone, venv = work / "navbuild", work / "navbuild" / ".venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    figures: dict[str, str] = {}
    others = busy(args.busy)
    try:
        seconds, code, _ = run(["git", "clone", "-q", args.source, str(clone)], work, env, work / "clone.log")
        assert code == 0, (work / "clone.log").read_text()
        figures["clone"] = f"{seconds:.0f} s"
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
        env = {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", *(["--no-cache-dir"] if args.no_cache else []),
               "-e", f".[{args.extra}]"]
        print(f"installing .[{args.extra}] into a fresh venv in {clone} ...", flush=True)
        seconds, code, output = run(pip, clone, env, work / "install.log")
        if code != 0:
            print(output[-3000:], file=sys.stderr)
            return 1
        figures["install"] = f"{seconds / 60:.1f} min"
        figures["venv"] = size_of(venv)
        if not args.no_tests:
            print("running the test suite (python -m pytest -q -ra --durations=30) ...", flush=True)
            seconds, code, output = run([python, "-m", "pytest", "-q", "-ra", "--durations=30"], clone, env,
                                        work / "tests.log")
            figures["tests"] = f"{seconds / 60:.1f} min"
            figures["result"] = test_result(output)
    finally:
        for process in others:
            process.kill()
            process.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    head = subprocess.run(["git", "-C", args.source, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    print(f"\nset-up figures, {datetime.date.today().isoformat()}, {socket.gethostname()}, "
          f"{os.cpu_count()} cores, commit {head or '?'}, .[{args.extra}], "
          f"{'quiet' if not args.busy else f'beside {args.busy} busy processes'}"
          f"{', pip without its cache' if args.no_cache else ''}")
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")
    if args.keep:
        print(f"kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
