"""Runners: the code that executes one task type. Built lazily: the http runner imports
httpx, and the sql runner psycopg, only when a task needs them."""

from __future__ import annotations

import threading

from ordo.errors import RunnerError
from ordo.runners.base import Runner


class RunnerSet:
    """One runner per task type, made on first use; ``close`` releases pools."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()

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

    def close(self) -> None:
        """Close every runner made so far (stops the python hosts)."""
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()


def make_runners(pool_size: int) -> RunnerSet:
    """The runners of one worker process; ``pool_size`` warm python hosts are kept (use
    the worker's slot count). Nothing heavy is imported until a task type is first run."""
    return RunnerSet(pool_size)
