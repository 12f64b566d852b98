"""What every runner receives and returns.

A runner executes one attempt of one task run and returns an :class:`~ordo.model.Outcome`.
It never raises for a task failure (a non-zero exit, a python exception in user code, an
SQL error, an unreachable URL): those are outcomes. It enforces ``ctx.timeout`` itself by
stopping everything it started (process trees: SIGTERM, then SIGKILL after
``ctx.kill_grace``), and stops early the same way when ``ctx.cancel`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ordo.model import Outcome, Task

#: ``log(stream, line)``: stream is "stdout" or "stderr"; line has no trailing newline.
LogSink = Callable[[str, str], None]


@dataclass
class RunContext:
    """Everything one attempt needs. ``fields`` are the task's own fields (``spec``)
    after template rendering; ``with_`` and ``env`` are rendered too."""

    execution_id: int
    task_run_id: int
    attempt_id: int
    attempt_number: int
    task: Task
    fields: Mapping[str, Any]
    with_: Mapping[str, Any]
    env: Mapping[str, str]
    base_dir: str
    log: LogSink
    timeout: float | None = None
    kill_grace: float = 5.0
    cancel: threading.Event = field(default_factory=threading.Event)


class Runner(Protocol):
    def run(self, ctx: RunContext) -> Outcome: ...

    def close(self) -> None:
        """Release pooled resources (processes, connections)."""
