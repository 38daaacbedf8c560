"""navbuild's targets as doit tasks, run through doit's library API.

Each target is a doit task whose ``uptodate`` asks the store (not doit's dependency file) and
whose action builds it; the action hands user code to a worker process (``workers``), so ``-j N``
runs doit's thread executor: N threads, each waiting on a worker.
"""
from __future__ import annotations

from typing import Any, Iterator

from navbuild.engine.graph import PROFILE
from navbuild.engine.session import Session

_SESSION: Session | None = None


def use_session(session: Session) -> None:
    global _SESSION
    _SESSION = session


def _session() -> Session:
    if _SESSION is None:
        raise RuntimeError("navbuild: no session; load tasks through navbuild.engine.doit_glue.task_dicts")
    return _SESSION


def _uptodate(name: str) -> bool:
    return _session().is_up_to_date(name)


def _action(name: str) -> Any:
    from doit.exceptions import TaskFailed

    if _session().run(name):
        return None
    record = _session().records.get(name)
    return TaskFailed(f"{name}: {record.reason if record else 'failed'}")


def task_dicts(session: Session) -> Iterator[dict[str, Any]]:
    """One doit task per target, plus a group task per alias."""
    use_session(session)
    session.store.hold_shared()  # plain doit builds too: gc waits for it
    for name, target in session.graph.targets.items():
        yield {
            "basename": name,
            "doc": _doc(target),
            "actions": [(_action, [name])],
            "task_dep": list(target.deps),
            "uptodate": [(_uptodate, [name])],
            "verbosity": 2,  # navbuild captures build output into build.log itself
        }
    for alias, members in sorted(session.graph.aliases.items()):
        if alias in session.graph.targets:
            continue
        selected = session.graph.resolve([alias])
        yield {"basename": alias, "doc": f"alias: {len(members)} targets", "actions": None, "task_dep": selected}


def _doc(target: Any) -> str:
    if target.kind == PROFILE:
        return f"profile of {target.artifact} (latency and throughput)"
    if target.rule is None:
        return f"correctness of {target.artifact}"
    return f"{target.rule.name} ({target.precision}, {target.device})"


def run(session: Session, task_names: list[str], jobs: int = 1, reporter: Any = None) -> int:
    """Run the given doit tasks; returns doit's exit code (navbuild's own comes from the records)."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    def task_navbuild():
        yield from task_dicts(session)

    namespace = {"task_navbuild": task_navbuild,
                 "DOIT_CONFIG": {"backend": "navbuild-null", "dep_file": str(session.store.root / "doit-null"),
                                 "verbosity": 2, "reporter": reporter or "zero"}}
    args = ["run", "--continue"]
    if jobs > 1:  # threads that wait on worker processes (navbuild.engine.workers): one per running target
        args += ["-n", str(jobs), "-P", "thread"]
        from navbuild.engine import workers

        workers.pool(session).size = jobs
    extra = {"BACKEND": {"navbuild-null": "navbuild.engine.doit_glue:NullBackend"}}
    return DoitMain(ModuleTaskLoader(namespace), config_filenames=(), extra_config=extra).run(args + task_names)


class NullBackend:
    """doit's dependency database, kept in memory only: navbuild's store decides what is up to date,
    so no file is written that concurrent processes could corrupt (doit's dbm default can't be
    shared)."""

    def __init__(self, name: str, codec: Any = None, **_: Any) -> None:
        self.codec, self.name = codec, name
        self._db: dict[str, dict[str, Any]] = {}

    def dump(self) -> None:
        pass

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        self._db.setdefault(task_id, {})[dependency] = value

    def get(self, task_id: str, dependency: str) -> Any:
        return self._db.get(task_id, {}).get(dependency)

    def in_(self, task_id: str) -> bool:
        return task_id in self._db

    def remove(self, task_id: str) -> None:
        self._db.pop(task_id, None)

    def remove_all(self) -> None:
        self._db.clear()
