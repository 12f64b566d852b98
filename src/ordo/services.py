"""What people and programs ask of ordo, once for every edge: the CLI and the REST API
call these, so a kill, a restart or a start means the same whichever way it came.

Each function takes the store and the time, checks what it is asked against the
execution's or flow's current state, and raises :class:`~ordo.errors.NotFound`,
:class:`~ordo.errors.Conflict` (with the current state), :class:`~ordo.errors.Forbidden`
or :class:`~ordo.errors.DefinitionError` instead of doing something half.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ordo import definitions, engine, templating
from ordo.errors import Conflict, Forbidden, NotFound, OrdoError, UsageError
from ordo.model import MARKS, Flow, RunOptions, State, Trigger
from ordo.runners.process import stop_groups, this_machine
from ordo.store import Store
from ordo.store.records import ExecutionRow, Revision, ScheduleRow
from ordo.store.recovery import Marked

logger = logging.getLogger(__name__)


def token_hash(token: str) -> str:
    """How an API token is stored: never itself, only this."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- flows ----------------------------------------------------------------------------
def find_flow(store: Store, namespace: str, flow_id: str, revision: int | None = None) -> Revision:
    """The newest (or given) revision of a flow; NotFound naming it."""
    found = store.find_flow(namespace, flow_id, revision)
    if found is None:
        which = f" revision {revision}" if revision is not None else ""
        raise NotFound(f"flow {namespace}/{flow_id}{which} not found")
    return found


def register_file(store: Store, path: str | Path, now: float) -> Revision:
    """The stored revision for a flow file or package folder: its newest when nothing
    of it changed, else validated and stored as its flow's next revision
    (DefinitionError lists every problem at ``file:line:column``)."""
    return engine.register_flow(store, path, now)


def register_text(
    store: Store,
    text: str,
    now: float,
    *,
    fmt: Literal["yaml", "json"] | None = None,
    where: str = "request body",
    base_dir: str | None = None,
) -> Revision:
    """Validate a flow sent as text (YAML or JSON) and store it as its flow's next
    revision, or return the stored one when the text is unchanged. DefinitionError lists
    every problem at ``where:line:column``."""
    flow = definitions.parse_flow(text, where, fmt=fmt)
    flow = msgspec.structs.replace(flow, path=None, base_dir=base_dir or os.getcwd())
    return store.add_revision(flow, text, definitions.content_hash(text.encode()), now)


def validate_text(text: str, fmt: Literal["yaml", "json"] | None = None) -> Flow:
    """The flow a text defines, or DefinitionError with every problem."""
    return definitions.parse_flow(text, "request body", fmt=fmt)


def set_active(store: Store, namespace: str, flow_id: str, active: bool, now: float) -> None:
    store.set_flow_active(namespace, flow_id, active, now)


# -- starting ---------------------------------------------------------------------------
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def start(
    store: Store,
    revision: Revision,
    inputs: Mapping[str, Any],
    now: float,
    *,
    started_by: str = "manual",
    labels: Mapping[str, str] | None = None,
    dev: bool = False,
    idempotency_key: str | None = None,
    skip_tasks: Sequence[str] = (),
    continue_on_error: bool | None = None,
    queue: str | None = None,
    options: RunOptions | None = None,
    scope: Sequence[str] | None = None,
) -> int:
    """Start an execution by hand or through the API (``started_by`` says which);
    Forbidden when the flow says ``allow_manual: false``. An ``idempotency_key`` used
    before returns that execution's id and starts nothing. ``options``: this run's
    retry, timeout and notify (:func:`ordo.definitions.read_run_options`); ``scope``:
    the namespaces the starter's token is limited to (None: all), recorded with the
    execution so that its handlers start children only there."""
    flow = revision.flow
    if queue is not None and not QUEUE_NAME.fullmatch(queue):
        raise UsageError(
            f"queue: {queue!r} is not a queue name (letters, digits, '_', '-', '.', at most 100)"
        )
    if not flow.allow_manual:
        raise Forbidden(
            f"flow {flow.key} does not allow manual starts (allow_manual: false); its "
            "triggers start it"
        )
    return engine.start_execution(
        store,
        revision,
        inputs,
        now,
        labels=labels,
        dev=dev,
        idempotency_key=idempotency_key,
        started_by=started_by,
        skip_tasks=skip_tasks,
        continue_on_error=continue_on_error,
        queue=queue,
        options=options,
        scope=scope,
    )


def start_by_trigger(
    store: Store,
    revision: Revision,
    trigger: Trigger,
    passed: Mapping[str, Any],
    now: float,
    idempotency_key: str | None = None,
    scope: Sequence[str] | None = None,
    schedule_id: int | None = None,
) -> int:
    """Start an execution for a trigger (``allow_manual`` does not apply): the trigger's
    own ``inputs`` as the declared inputs, and what it passes (``event``, ``body``,
    ``schedule``) beside them. ``scope``: the namespaces of the token that sent the
    event, when it is limited to some; ``schedule_id``: the SCHEDULE execution of a
    schedule's tick, its parent."""
    return engine.start_execution(
        store,
        revision,
        trigger.inputs,
        now,
        started_by=f"{trigger.type}:{trigger.id}",
        trigger_inputs=passed,
        idempotency_key=idempotency_key,
        scope=scope,
        schedule_id=schedule_id,
    )


class Emitted(Struct, frozen=True):
    """An event as recorded, and the executions it started (or why a flow it matched
    did not start)."""

    event_id: int
    executions: list[int]
    errors: list[str]


def emit(
    store: Store,
    event_type: str,
    data: Any,
    now: float,
    namespaces: Sequence[str] | None = None,
) -> Emitted:
    """Record an event and start every active flow with an ``event`` trigger of this
    type whose ``filter`` holds, with ``inputs.event`` = ``{id, type, data}``; only the
    flows of ``namespaces`` when given (an event sent with a token limited to them),
    each recording them as its scope. A flow whose filter or inputs fail does not stop
    the others: its error is in ``errors``."""
    if not event_type or len(event_type) > 200:
        raise UsageError(f"an event type is 1 to 200 characters, found {len(event_type)}")
    event_id = store.add_event(event_type, data, now)
    payload = {"id": event_id, "type": event_type, "data": data}
    started: list[int] = []
    errors: list[str] = []
    for revision, trigger in subscribed(store, "event"):
        if trigger.event != event_type:
            continue
        if namespaces is not None and revision.namespace not in namespaces:
            continue
        try:
            if trigger.filter is not None and not _holds(trigger.filter, payload):
                continue
            started.append(
                start_by_trigger(
                    store, revision, trigger, {"event": payload}, now, scope=namespaces
                )
            )
        except OrdoError as exc:
            errors.append(f"{revision.flow.key} ({trigger.id}): {exc}")
            logger.warning("event %s not started for %s: %s", event_type, revision.flow.key, exc)
    store.set_event_executions(event_id, started)
    return Emitted(event_id, started, errors)


def _holds(condition: str, event: Mapping[str, Any]) -> bool:
    value = templating.render(condition, {"event": event})
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none")
    return bool(value)


def subscribed(store: Store, kind: str) -> list[tuple[Revision, Trigger]]:
    """The newest revision of every active flow with a trigger of ``kind``, and that
    trigger (a flow with two such triggers appears twice)."""
    flags = store.flow_flags()
    found = []
    for revision in store.list_flows():
        flow = revision.flow
        if not flags.get((flow.namespace, flow.id), flow.active):
            continue
        found += [(revision, t) for t in flow.triggers if t.type == kind]
    return found


def webhook_trigger(
    store: Store, namespace: str, flow_id: str, key: str
) -> tuple[Revision, Trigger]:
    """The flow's webhook trigger with this key. A wrong key is NotFound exactly like an
    unknown flow, so a key cannot be guessed flow by flow; an inactive flow is Conflict."""
    missing = NotFound(f"no webhook {namespace}/{flow_id}/<key>")
    revision = store.find_flow(namespace, flow_id, None)
    if revision is None:
        raise missing
    for trigger in revision.flow.triggers:
        if trigger.type == "webhook" and _same(trigger.key, key):
            if not store.flow_active(namespace, flow_id):
                raise Conflict(f"flow {namespace}/{flow_id} is not active")
            return revision, trigger
    raise missing


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(
        hashlib.sha256(a.encode()).digest(), hashlib.sha256(b.encode()).digest()
    )


# -- changing executions ----------------------------------------------------------------
def kill(store: Store, execution_id: int, who: str, now: float) -> ExecutionRow:
    """Ask to kill an execution and its children: KILLING now, KILLED when its workers
    have stopped its attempts. Conflict when it has ended."""
    execution = store.get_execution(execution_id)
    if execution.state.terminal:
        raise Conflict(
            f"execution {execution_id} already ended {execution.state.value}; nothing to kill"
        )
    if execution.state is not State.KILLING:
        store.kill_execution(execution_id, f"killed by {who}", now)
    return store.get_execution(execution_id)


def top_execution(store: Store, execution_id: int, verb: str) -> ExecutionRow:
    """The execution, if it is the top of its tree (children go with their root)."""
    execution = store.get_execution(execution_id)
    if execution.parent_id is not None:
        raise Conflict(
            f"execution {execution.id} is a child of execution {execution.parent_id}: "
            f"{verb} {execution.root_id or execution.parent_id}"
        )
    return execution


def restart(
    store: Store,
    execution_id: int,
    now: float,
    *,
    from_task: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> list[str]:
    """Restart an ended top execution in place; the task runs that run again."""
    top_execution(store, execution_id, "restart")
    return engine.restart_execution(
        store, execution_id, now, from_task=from_task, given_inputs=inputs, latest=latest
    )


def replay(
    store: Store,
    execution_id: int,
    from_task: str,
    now: float,
    *,
    inputs: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> int:
    """A new execution replaying an ended one from ``from_task`` (of the flow's newest
    revision when ``latest``); its id."""
    return engine.replay_execution(
        store, execution_id, from_task, now, given_inputs=inputs, latest=latest
    )


def mark(
    store: Store,
    execution_id: int,
    task: str,
    state: str,
    who: str,
    now: float,
    reason: str | None = None,
) -> Marked:
    """Set an ended task run SUCCESS or FAILED through a manual attempt."""
    new = {s.value.lower(): s for s in MARKS}.get(state.lower())
    if new is None:
        raise Conflict(f"a task run can be marked {' or '.join(s.value for s in MARKS)}")
    return store.mark_task_run(execution_id, task, new, who, reason, now)


def save(store: Store, execution_id: int, name: str, description: str | None, now: float) -> None:
    engine.save_execution(store, execution_id, name, description, now)


def unsave(store: Store, execution_id: int) -> str:
    """Forget that an execution was saved; the name it was saved as."""
    return store.unsave_execution(execution_id)


def register_flow(store: Store, flow: Flow, source: str, content_hash: str, now: float) -> Revision:
    """The stored revision of ``flow`` with this content hash, or its next revision."""
    known = store.find_revision(content_hash, flow.path)
    return known or store.add_revision(flow, source, content_hash, now)


def restart_on(store: Store, execution_id: int, revision_id: int, now: float) -> list[str]:
    """Restart an ended execution in place on ``revision_id`` of its flow (a changed
    config of the same flow); the task runs that run again."""
    return store.restart_execution(execution_id, now, revision_id=revision_id)


def rerun_nothing(store: Store, execution_id: int, why: str, now: float) -> None:
    """Record a new attempt of an execution that succeeded, running nothing (an
    Executioner resume of a run that already succeeded)."""
    store.rerun_nothing(execution_id, why, now)


def take_back_dead(store: Store, root_id: int, now: float, grace: float = 5.0) -> list[str]:
    """Before an execution tree is resumed: record the running attempts of its workers
    known to be dead (processes of this machine that are gone) as lost; their ids. The
    process groups those attempts started, which outlive their worker, are stopped
    first (SIGTERM, SIGKILL after ``grace`` seconds) and waited for, so that no task
    runs again while its lost copy still runs."""
    dead = [w for w in store.tree_workers(root_id) if _is_dead(w)]
    if dead:
        lost = store.lost_processes(this_machine(), worker_ids=dead)
        stopped = stop_groups([(p.group, p.started) for p in lost], grace)
        if stopped:
            logger.warning("stopped the processes of lost attempts: groups %s", stopped)
        store.reap_workers(dead, now, random.Random())
    return dead


def _is_dead(worker_id: str) -> bool:
    """A worker id is ``host:pid:suffix``: dead when on this host and that process is
    gone (or is no longer an ordo process). Other hosts' workers: their leases tell."""
    host, _, rest = worker_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host != os.uname().nodename or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"ordo" not in f.read()
    except FileNotFoundError:
        return True
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            return False
        return True


def connection_config(
    name: str,
    kind: str,
    url: str | None,
    base_url: str | None,
    headers: Mapping[str, str],
    *,
    flags: bool = False,
) -> dict[str, Any]:
    """A connection's config, checked against its type (``sql``: ``url``; ``http``:
    ``base_url`` and ``headers``); UsageError saying what is wrong (named as command
    line options when ``flags``)."""
    opt = (lambda n: f"--{n.replace('_', '-')}") if flags else (lambda n: n)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"a connection name may hold letters, digits, -, _ and ., found {name!r}")
    if kind == "sql":
        if not url or base_url or headers:
            raise UsageError(
                f"a sql connection takes {opt('url')} (and no {opt('base_url')} or "
                f"{opt('header') if flags else 'headers'})"
            )
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise UsageError(
                f"{opt('url')}: expected sqlite:///PATH or postgresql://..., found {url!r}"
            )
        return {"url": url}
    if kind != "http":
        raise UsageError(f"a connection's type is sql or http, found {kind!r}")
    if not base_url or url:
        raise UsageError(
            f"an http connection takes {opt('base_url')} (and "
            f"{'--header NAME:VALUE' if flags else 'headers'})"
        )
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"{opt('base_url')}: expected http:// or https://..., found {base_url!r}")
    return {"base_url": base_url, "headers": dict(headers)}


# -- stored schedules -------------------------------------------------------------------
def every_to_cron(minutes: int) -> str:
    """``every N minutes`` as a cron expression: N divides an hour, or is whole hours
    that divide a day; UsageError otherwise."""
    if minutes >= 1 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    raise UsageError(
        f"every {minutes} minutes: choose minutes that divide an hour (1, 2, 5, 10, 15, 30, "
        "...) or whole hours that divide a day (60, 120, 180, 360, 720, 1440), or a cron "
        "expression"
    )


def check_schedule(
    revision: Revision, cron_text: str, timezone: str, inputs: Mapping[str, Any]
) -> dict[str, Any]:
    """The schedule's inputs converted for its flow; UsageError with the cron module's
    message for a bad expression or time zone, DefinitionError for bad inputs."""
    from ordo import cron  # zoneinfo: only where schedules are read

    problems = cron.schedule_problems(cron_text, timezone, "standard")
    if problems:
        raise UsageError("; ".join(f"{key}: {message}" for key, message in problems))
    return definitions.coerce_inputs(revision.flow, inputs)


def add_schedule(
    store: Store,
    namespace: str,
    flow_id: str,
    cron_text: str,
    timezone: str,
    inputs: Mapping[str, Any],
    active: bool,
    who: str,
    now: float,
) -> ScheduleRow:
    """Keep a schedule for the flow beside its own triggers; nothing is kept when the
    cron expression, the time zone or the inputs are wrong."""
    revision = find_flow(store, namespace, flow_id)
    converted = check_schedule(revision, cron_text, timezone, inputs)
    return store.add_schedule(
        namespace, flow_id, cron_text.strip(), timezone, converted, active, who, now
    )


def change_schedule(
    store: Store,
    schedule_id: int,
    cron_text: str,
    timezone: str,
    inputs: Mapping[str, Any],
    active: bool,
    now: float,
) -> ScheduleRow:
    current = store.get_schedule(schedule_id)
    revision = find_flow(store, current.namespace, current.flow_id)
    converted = check_schedule(revision, cron_text, timezone, inputs)
    return store.update_schedule(schedule_id, cron_text.strip(), timezone, converted, active, now)


def next_schedule_times(cron_text: str, timezone: str, after: float, count: int = 5) -> list[float]:
    """The next fire times of a schedule being written (the helper shows them as one
    types); UsageError with the cron module's message when it is wrong."""
    from ordo import cron  # zoneinfo: only where schedules are read

    problems = cron.schedule_problems(cron_text, timezone, "standard")
    if problems:
        raise UsageError("; ".join(f"{key}: {message}" for key, message in problems))
    return cron.next_times(cron.Schedule(cron_text.strip(), timezone), after, count)


def schedule_trigger(row: ScheduleRow) -> Trigger:
    """A stored schedule as the scheduler sees it: a schedule trigger of its flow."""
    return Trigger(
        row.trigger_id, "schedule", cron=row.cron, timezone=row.timezone, inputs=row.inputs
    )


def stored_subscribed(store: Store) -> list[tuple[Revision, Trigger]]:
    """Every active stored schedule of an active flow, with its flow's newest revision."""
    schedules = [s for s in store.list_schedules() if s.active]
    if not schedules:
        return []
    flags = store.flow_flags()
    found = []
    for row in schedules:
        revision = store.find_flow(row.namespace, row.flow_id, None)
        if revision is None or not flags.get((row.namespace, row.flow_id), revision.flow.active):
            continue
        found.append((revision, schedule_trigger(row)))
    return found


def remove_schedule(store: Store, schedule_id: int) -> None:
    store.remove_schedule(schedule_id)
