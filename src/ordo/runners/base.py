"""What every runner receives and returns.

A runner executes one attempt of one task run and returns an :class:`~ordo.model.Outcome`.
It never raises for a task failure (a non-zero exit, a python exception in user code, an
SQL error, an unreachable URL): those are outcomes. It enforces ``ctx.timeout`` itself by
stopping everything it started (process trees: SIGTERM, then SIGKILL after
``ctx.kill_grace``), and stops early the same way when ``ctx.cancel`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

from msgspec import Struct, field

from ordo.model import Check, Outcome, State, Task
from ordo.secrets import Revealed

#: ``log(stream, line)``: stream is "stdout" or "stderr"; line has no trailing newline.
LogSink = Callable[[str, str], None]


class CappedLog(Protocol):
    """A log sink that stops keeping lines past a size: once ``full``, readers stop
    splitting output into lines and only tell it how much they dropped."""

    @property
    def full(self) -> bool: ...

    def dropped(self, size: int, lines: int) -> None:
        """``size`` more bytes (``lines`` of them newlines) were read and not kept."""


def capped(log: LogSink) -> CappedLog | None:
    """``log`` when it is a :class:`CappedLog`, else None. Checked by its attributes:
    ``isinstance`` with a runtime protocol costs about 30 µs, on every attempt."""
    return cast(CappedLog, log) if hasattr(log, "dropped") and hasattr(log, "full") else None


class CheckPlan(Struct, frozen=True):
    """A task's pre and post checks for one attempt, run around the runner by
    :mod:`ordo.runners.checks`. ``render(check, own)`` gives the check with its templates
    rendered (``own``: the attempt's outputs, seen as ``outputs.<task>`` by post checks;
    None before the task ran) and raises :class:`~ordo.errors.OrdoError` when it cannot.
    ``facts`` are what a function check may take (inputs, outputs, execution, fork)."""

    pre: tuple[Check, ...] = ()
    post: tuple[Check, ...] = ()
    render: Callable[[Check, Mapping[str, Any] | None], Check] = lambda check, own: check
    facts: Mapping[str, Any] = field(default_factory=dict)


class Cancel:
    """Set once an attempt must stop early (a kill, its execution's timeout): runners
    look at it while they wait for their work. A plain flag: nothing waits on it, and a
    ``threading.Event`` (a condition and its lock) cost more than a small task's
    attempt to make."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True


class RunContext(Struct):
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
    cancel: Cancel = field(default_factory=Cancel)
    #: ``{function: module:func}`` of a run_if to evaluate before running, with ``facts``
    #: (inputs, outputs, execution, fork) as the keyword arguments it may take.
    run_if: Mapping[str, Any] | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    #: Texts never to show (secrets, connection passwords, header values, and their
    #: encodings: :func:`ordo.masking.forms`): masked in logs, outputs and errors.
    secrets: tuple[str, ...] = ()
    #: The secrets this attempt may read (``system.secret``); their values are among
    #: ``secrets``.
    vault: Revealed = field(default_factory=Revealed)
    #: A python handler's calls into ordo (``this.flow``, ``this.connect``, ``system.*``):
    #: a request dict in, an answer dict out; blocks until answered. None outside a worker.
    call: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: The task's pre and post checks, when it has any.
    checks: CheckPlan | None = None
    #: Told the id of each process group the attempt starts (its own session) and when
    #: its leader started (:func:`~ordo.runners.process.group_start`), so that the
    #: worker can record them: if the worker dies, whoever takes the attempt back on
    #: this machine stops that group before the task runs again.
    process_started: Callable[[int, int | None], None] | None = None
    #: A flow function's: the log of the ``@task`` attempt its host runs now (its lines
    #: come between :data:`~ordo.runners.pyhost.STEP` markers), asked once per attempt.
    step_log: Callable[[int], LogSink | None] | None = None


def crashed(exc: Exception) -> Outcome:
    """The outcome of an attempt whose runner (ordo's code, not the task's) raised
    ``exc``: a bug must not lose the attempt."""
    return Outcome(State.FAILED, reason="error", error=f"internal error: {exc!r}")


class Runner(Protocol):
    def run(self, ctx: RunContext) -> Outcome: ...

    def close(self) -> None:
        """Release pooled resources (processes, connections)."""
