"""Runners: the code that executes one task type. Built lazily: the http runner imports
httpx, and the sql runner psycopg, only when a task needs them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ordo.errors import RunnerError

if TYPE_CHECKING:
    from ordo.runners.base import RunContext, Runner
    from ordo.runners.checks import CheckRunner
    from ordo.runners.python import PythonRunner
    from ordo.runners.spawn import Spawned


class RunnerSet:
    """One runner per task type, made on first use; ``close`` releases pools."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._checks: CheckRunner | None = None

    def get(self, task_type: str) -> Runner:
        """The runner for ``task_type``; safe to call from several threads."""
        runner = self._runners.get(task_type)
        if runner is None:
            with self._lock:
                runner = self._runners.get(task_type)
                if runner is None:
                    runner = self._runners[task_type] = self._make(task_type)
        return runner

    def _make(self, task_type: str) -> Runner:
        if task_type == "shell":
            from ordo.runners.shell import ShellRunner

            return ShellRunner()
        if task_type == "python":
            from ordo.runners.python import PythonRunner

            return PythonRunner(self.pool_size)
        if task_type == "sql":
            from ordo.runners.sql import SqlRunner

            return SqlRunner()
        if task_type == "http":
            from ordo.runners.http import HttpRunner

            return HttpRunner()
        raise RunnerError(f"no runner for task type {task_type!r}")

    def checks(self) -> CheckRunner:
        """What runs tasks' pre and post checks (function checks on the python hosts)."""
        if self._checks is None:
            from ordo.runners.checks import CheckRunner

            self._checks = CheckRunner(self._evaluate_check)
        return self._checks

    def _evaluate_check(
        self, function: str, base_dir: str, facts: Mapping[str, Any], ctx: RunContext
    ) -> Any:
        return self._python().evaluate(function, base_dir, facts, ctx, what="function check")

    def _python(self) -> PythonRunner:
        """The python runner (made now if it was not)."""
        from ordo.runners.python import PythonRunner

        runner = self.get("python")
        assert isinstance(runner, PythonRunner)
        return runner

    def warm_python(self, count: int | None = None) -> None:
        """Have ``count`` idle python hosts (default: the pool's size), starting those
        missing now, so that the first python tasks find them up."""
        self._python().warm(count)

    def adopt_python(self, spawned: Spawned) -> None:
        """Use a python host started before this set was made (see
        :mod:`ordo.runners.spawn`) as an idle one."""
        self._python().adopt(spawned)

    def hang_up(self) -> None:
        """Have the idle python hosts start exiting while the caller finishes its own
        work (printing, closing the store); :meth:`close` reaps them."""
        from ordo.runners.python import PythonRunner

        runner = self._runners.get("python")
        if isinstance(runner, PythonRunner):
            runner.hang_up()

    def close(self) -> None:
        """Close every runner made so far (stops the python hosts)."""
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()


def make_runners(pool_size: int) -> RunnerSet:
    """The runners of one worker process; ``pool_size`` warm python hosts are kept (use
    the worker's slot count). Nothing heavy is imported until a task type is first run."""
    return RunnerSet(pool_size)
