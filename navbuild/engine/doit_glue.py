"""Plain ``doit`` on navbuild's graph (``dodo.py``): each target a doit task, built by the one
scheduler.

doit is a front here, as its own ``api.py`` is one over its runner: doit orders the tasks and asks
``uptodate`` (the store, never doit's dependency file); a task's action hands its target to
navbuild's scheduler (``engine/scheduler.py``), which finds what it needs current, settles the
target as the CLI would (worker processes, slots, records) and writes navbuild.lock.
``navbuild`` and the Python API call the scheduler directly, without doit.

``doit forget TARGET`` forgets for real: doit's own forget clears doit's database, which decides
nothing here, so ``Forget`` (registered as doit's ``forget`` command in pyproject.toml's
``[tool.doit.plugins.command]``) drops the target's build from the store's action cache instead;
the next ``doit`` or ``navbuild`` builds it again (or restores it from a remote cache, if one is
set). Its files stay in the store until ``navbuild gc``.
"""
from __future__ import annotations

from typing import Any, Iterator

from navbuild.engine import lockfile
from navbuild.engine.graph import PROFILE
from navbuild.engine.records import FAILED
from navbuild.engine.scheduler import Scheduler
from navbuild.engine.session import Session

_SCHEDULER: Scheduler | None = None


def _scheduler() -> Scheduler:
    if _SCHEDULER is None:
        raise RuntimeError("navbuild: no session; load tasks through navbuild.engine.doit_glue.task_dicts")
    return _SCHEDULER


def _uptodate(name: str) -> bool:
    return _scheduler().session.is_up_to_date(name)


def _action(name: str) -> Any:
    from doit.exceptions import TaskFailed

    record = _scheduler().build([name])[name]
    return TaskFailed(f"{name}: {record.reason or 'failed'}") if record.status == FAILED else None


def task_dicts(session: Session) -> Iterator[dict[str, Any]]:
    """One doit task per target, plus a group task per alias."""
    global _SCHEDULER
    _SCHEDULER = Scheduler(session, lock=lockfile.path_for(session.project.root), keep_open=True)
    session.store.hold_shared()  # gc waits for plain doit builds too
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


def forget(session: Session, names: list[str]) -> list[str]:
    """Drop the current build of each target named (an alias: of its members) from the store's
    action cache, dependents first (a dependency forgotten first would hide their keys); one line
    per target says what was forgotten."""
    graph = session.graph
    wanted: list[str] = []
    for name in names:
        for member in graph.resolve([name]) if name not in graph.targets else [name]:
            if member not in wanted:
                wanted.append(member)
    order = {name: index for index, name in enumerate(graph.closure(wanted))}
    lines = []
    for name in sorted(wanted, key=order.__getitem__, reverse=True):
        manifest = session.current_manifest(name)
        if manifest is None:
            lines.append(f"{name}: no current build to forget")
            continue
        session.store.drop_manifest(manifest["key"])
        session.keys.drop_current(name)
        lines.append(f"{name}: forgotten (its build {manifest['key'][:12]} dropped from the store); "
                     f"the next run builds it again")
    return lines


def _forget_command() -> type:
    """doit's ``forget`` command, forgetting in navbuild's store (doit's database decides nothing)."""
    from doit.cmd_base import check_tasks_exist, tasks_and_deps_iter
    from doit.cmd_forget import Forget as DoitForget

    class Forget(DoitForget):
        doc_purpose = "forget targets' builds (navbuild: drops them from the store's action cache)"

        def _execute(self, forget_sub, forget_disable_default, forget_all):
            if _SCHEDULER is None:  # not navbuild's tasks: doit's own forget
                return super()._execute(forget_sub, forget_disable_default, forget_all)
            tasks = {task.name: task for task in self.task_list}
            if forget_all:
                selected = [name for name in tasks if name in _scheduler().session.graph.targets]
            elif self.sel_default_tasks and forget_disable_default:
                self.outstream.write("no tasks specified, pass task name, --enable-default or --all\n")
                return 0
            else:
                check_tasks_exist(tasks, self.sel_tasks)
                selected = ([task.name for task in tasks_and_deps_iter(tasks, self.sel_tasks, True)]
                            if forget_sub else list(self.sel_tasks))
            for line in forget(_scheduler().session, selected):
                self.outstream.write(f"forgetting {line}\n")
            self.dep_manager.close()
            return 0

    return Forget


def __getattr__(name: str) -> Any:
    if name == "Forget":  # doit is imported only when doit asks for its command
        return _forget_command()
    raise AttributeError(name)


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
