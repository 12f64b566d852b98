"""Fixtures for the runner tests (``runner_*``): a fresh runner set and attempt contexts
whose log sink records every line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ordo.model import Task
from ordo.runners import RunnerSet, make_runners
from ordo.runners.base import RunContext


class RunnerLogs(list[tuple[str, str]]):
    """A log sink that keeps ``(stream, line)`` pairs, and can call back on each line."""

    def __init__(self) -> None:
        super().__init__()
        self.on_line: Callable[[str, str], None] | None = None

    def __call__(self, stream: str, line: str) -> None:
        self.append((stream, line))
        if self.on_line is not None:
            self.on_line(stream, line)

    def lines(self, stream: str) -> list[str]:
        return [line for s, line in self if s == stream]


RunnerCtx = Callable[..., RunContext]


@pytest.fixture
def runner_set() -> Iterator[RunnerSet]:
    runners = make_runners(2)
    yield runners
    runners.close()


@pytest.fixture
def runner_ctx() -> RunnerCtx:
    """``runner_ctx(base_dir, fields, with_=, env=, timeout=, attempt=)``."""

    def make(
        base: Path,
        fields: dict[str, Any],
        *,
        with_: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        attempt: int = 1,
    ) -> RunContext:
        return RunContext(
            execution_id=11,
            task_run_id=22,
            attempt_id=33,
            attempt_number=attempt,
            task=Task(id="step", type="x"),
            fields=fields,
            with_=with_ or {},
            env=env or {},
            base_dir=str(base),
            log=RunnerLogs(),
            timeout=timeout,
            kill_grace=0.5,
        )

    return make
