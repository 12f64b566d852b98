"""What the store asks the engine: the policy port.

The store records what happened; what follows from it — a retry, how a task run or an
execution ends, what a restart runs again — is decided by the engine's policy
(:mod:`ordo.engine.policy`), plain functions over the plain facts defined here. The
store calls them inside its transactions, so a decision and the writes it leads to
commit together, and names no policy module: a store is given its policy when it is
opened (``open_store(url, policy=...)``; :func:`ordo.engine.open_store` gives the
engine's), so that imports point one way, from the engine to the store (``lint-imports``
checks them). A store opened without one asks the policy the installed distribution
declares (:func:`installed_policy`: the entry point ``engine`` of the group
``ordo.policy``, in ``pyproject.toml``), as a plugin is found.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from msgspec import Struct

from ordo.errors import ConfigError
from ordo.model import Flow, FlowConcurrency, Outcome, RetryPolicy, State, Task
from ordo.store.records import TaskRunRow


class RunGroup(Struct, frozen=True):
    """Task runs of an execution alike in what decides its end (top-level task runs
    and for_each items; a handler's calls are part of the handler's attempt)."""

    state: State
    allow_failure: bool
    #: SKIPPED without a counted attempt (none since its last restart but attempts
    #: handed back or dropped before they ran)
    unstarted: bool
    #: skipped on request (its reason is :data:`~ordo.model.ON_REQUEST`)
    on_request: bool
    count: int


class EndFacts(Struct, frozen=True):
    """What the end of an execution is decided from."""

    execution_id: int
    current: State
    #: why the execution is being stopped (its timeout, its parent), when it is
    failing: str | None
    #: the reason run_if gave when it answered STOP, when it did
    stopped: str | None
    runs: Sequence[RunGroup]
    #: ``task 'x' failed: ...`` for the first task run that failed (read when needed)
    first_failure: Callable[[], str]


class Ending(Struct, frozen=True):
    """A state something ends in, and why."""

    state: State
    reason: str | None = None


class OutputFacts(Struct, frozen=True):
    """What a flow's ``outputs:`` are rendered against."""

    inputs: Mapping[str, Any]
    info: Mapping[str, Any]
    #: the outputs of the named tasks (the ones the templates refer to)
    outputs_of: Callable[[Iterable[str]], Mapping[str, Any]]


class RetryFacts(Struct, frozen=True):
    """A failed attempt, and what decides whether its task run tries again."""

    policy: RetryPolicy
    attempt_number: int
    reason: str | None
    exit_code: int | None
    elapsed: float
    #: the execution is RUNNING and neither stopping nor failing (a task failed, not
    #: allowed to, and it does not continue on error)
    execution_going: bool
    #: the task is a flow function (its completed steps are not done again)
    durable: bool = False


class Decisions(Protocol):
    """The policy the store asks; :mod:`ordo.engine.policy` is one (a module)."""

    def retry_delay(self, facts: RetryFacts, rng: random.Random) -> float | None: ...

    def dropped(self, earlier_attempts: int, why: str) -> Ending: ...

    def releases(self, state: State, allow_failure: bool, *, stop: bool = False) -> bool: ...

    def fails_execution(
        self, state: State, allow_failure: bool, keep_going: Callable[[], bool]
    ) -> bool: ...

    def items_at_once(self, count: int, concurrency: int | None) -> int: ...

    def items_verdict(
        self,
        counts: Mapping[tuple[State, bool], int],
        first: Callable[[State], tuple[int, str]],
    ) -> Ending: ...

    def end_state(self, facts: EndFacts) -> Ending: ...

    def settle(self, facts: EndFacts, why: str) -> Ending | None: ...

    def flow_outputs(
        self, flow: Flow, ending: Ending, stopped: str | None, facts: OutputFacts
    ) -> tuple[Ending, dict[str, Any] | None]: ...

    def admission(self, limit: FlowConcurrency, running: int, key: str) -> Ending | None: ...

    def child_outcome(
        self,
        what: str,
        ex_id: int,
        final: State,
        reason: str | None,
        outputs: Mapping[str, Any] | None,
        stopped: bool = False,
    ) -> Outcome: ...

    def restart_refusal(self, ex_id: int, state: State) -> str | None: ...

    def to_reuse(
        self, old: Flow, new: Flow, runs: Sequence[TaskRunRow], from_task: str | None
    ) -> dict[str, TaskRunRow]: ...

    def waits_for(self, task: Task, again: Collection[str]) -> int: ...

    def to_run_again(
        self, flow: Flow, runs: Sequence[TaskRunRow], from_task: str | None
    ) -> set[int]: ...

    def mark_refusal(self, ex_id: int, run: TaskRunRow, new: State) -> str | None: ...

    def reopened(
        self, flow: Flow, runs: Sequence[TaskRunRow], marked: TaskRunRow
    ) -> list[tuple[TaskRunRow, int]]: ...


#: The entry point group the policy a store asks by default is declared in.
POLICY_GROUP = "ordo.policy"


def installed_policy() -> Decisions:
    """The policy the installed distribution declares (entry point ``engine`` of
    :data:`POLICY_GROUP`): what a store opened without one asks."""
    from importlib.metadata import entry_points

    found = entry_points(group=POLICY_GROUP, name="engine")
    if not found:
        raise ConfigError(
            f"no policy installed (entry point 'engine' of {POLICY_GROUP!r}): "
            "reinstall ordo (pip install -e .), or open the store with ordo.engine.open_store"
        )
    return cast(Decisions, next(iter(found)).load())
