"""Registering flows, starting executions, and turning a claim
into what a runner needs (templates rendered against the store's outputs).

Every edge (CLI now, API later) changes state only through these functions and the
store's own transactional operations.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from msgspec import Struct

from ordo import definitions, templating
from ordo.engine import policy
from ordo.errors import (
    Conflict,
    DefinitionError,
    IllegalTransition,
    NotFound,
    OrdoError,
    Problem,
    UsageError,
    did_you_mean,
)
from ordo.masking import forms, masked, secret_values
from ordo.model import Check, Flow, Outcome, RunOptions, State, Task, function_run_if
from ordo.runners import stored
from ordo.runners.base import CheckPlan, LogSink, RunContext
from ordo.secrets import Revealed, SecretBox
from ordo.store import Store
from ordo.store.ports import OutputFacts
from ordo.store.records import Claim, Connection, ExecutionRow, Revision
from ordo.store.steps import StepRow

#: How deep child executions may nest (a flow running itself, directly or not).
MAX_DEPTH = 10

#: Evaluates a run_if function: ``(module:func, base_dir, facts) -> value``; raises
#: OrdoError with the reason when it cannot.
Evaluator = Callable[[str, str, Mapping[str, Any]], Any]


def read_flow_file(path: str | Path) -> tuple[str, bytes]:
    """The absolute path and bytes of a flow file, or a DefinitionError naming it."""
    absolute = os.path.abspath(path)
    try:
        with open(absolute, "rb") as f:
            return absolute, f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DefinitionError(
            [Problem(f"cannot read flow file: {reason}", path=str(path))]
        ) from exc


def register_flow(
    store: Store, path: str | Path, now: float, *, origin: str | None = None
) -> Revision:
    """The stored revision for this file or package folder: reused when neither it nor
    a file it references changed since its newest revision (no parsing, no
    validation), else validated and stored as the flow's next revision."""
    absolute = os.path.abspath(path)
    known = store.newest_at(absolute)
    if known is not None:
        package = definitions.is_package(absolute)
        names = [] if package else list(store.revision_scripts(known.id))
        same = definitions.current_hash(absolute, names) == known.content_hash
        folder = os.path.dirname(absolute)
        if same and (package or not definitions.added_references(known.flow, folder, names)):
            return known
    return store_prepared(store, definitions.prepare(path), now, origin=origin)


def store_prepared(
    store: Store, prepared: definitions.Prepared, now: float, *, origin: str | None = None
) -> Revision:
    """Store a read and validated flow as its next revision (or its newest, unchanged)."""
    return store.add_revision(
        prepared.flow,
        prepared.source,
        prepared.content_hash,
        now,
        scripts=prepared.scripts,
        origin=origin,
    )


def start_execution(
    store: Store,
    revision: Revision,
    given_inputs: Mapping[str, Any],
    now: float,
    *,
    labels: Mapping[str, str] | None = None,
    evaluate: Evaluator | None = None,
    parent: Claim | None = None,
    wait: bool = True,
    skip_tasks: Sequence[str] = (),
    continue_on_error: bool | None = None,
    dev: bool = False,
    idempotency_key: str | None = None,
    started_by: str | None = None,
    trigger_inputs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    options: RunOptions | None = None,
    scope: Sequence[str] | None = None,
    schedule_id: int | None = None,
) -> int:
    """Check and convert the inputs, evaluate the flow's run_if, then record and start a
    new execution. Flow labels are inherited; ``labels`` add to or override them. With
    ``parent`` it is a child execution of that attempt's execution (waited for by the
    attempt when ``wait``; dev when its parent is). ``skip_tasks`` end SKIPPED at once
    and count as done; ``continue_on_error`` overrides the flow's; ``dev`` marks a dev
    execution (kept ``retention.dev_days``). With an ``idempotency_key`` already used,
    nothing new is recorded and that execution's id is returned. ``trigger_inputs`` (what
    a trigger passes: ``event``, ``body``, ``schedule``) are added after the declared
    inputs are checked, whether declared or not. ``queue`` runs every task on that queue
    instead of its own; ``options`` are this run's retry, timeout and notify ("run with
    options"); ``scope`` the namespaces its starter's token is limited to (None: all),
    which its children inherit."""
    flow = revision.flow
    unknown = [t for t in skip_tasks if t not in {task.id for task in flow.tasks}]
    if unknown:
        known = ", ".join(t.id for t in flow.tasks)
        tip = did_you_mean(unknown[0], (t.id for t in flow.tasks))
        raise UsageError(f"--skip: {flow.key} has no task {unknown[0]!r}{tip} (tasks: {known})")
    inputs = {**definitions.coerce_inputs(flow, given_inputs), **(trigger_inputs or {})}
    merged = {**flow.labels, **(labels or {})}
    skip = _flow_run_if(flow, inputs, merged, evaluate)
    return store.create_execution(
        revision.id,
        inputs,
        merged,
        now,
        parent_id=parent.execution_id if parent else None,
        parent_attempt_id=parent.attempt_id if parent and wait else None,
        skip=skip,
        skip_tasks=list(dict.fromkeys(skip_tasks)),
        continue_on_error=continue_on_error,
        dev=dev,
        idempotency_key=idempotency_key,
        started_by=started_by or ("child" if parent else None),
        queue=queue,
        options=options,
        scope=scope,
        schedule_id=schedule_id,
    )


def save_execution(
    store: Store, execution_id: int, name: str, description: str | None, now: float
) -> None:
    """Save an execution under ``name`` (see :meth:`Store.save_execution`); a
    UsageError says what is wrong with a name: empty, longer than 100 characters, with
    control characters or only digits (it would read as an execution id)."""
    problem = None
    if not name.strip() or name != name.strip():
        problem = "must not be empty nor start or end with spaces"
    elif len(name) > 100:
        problem = f"must be at most 100 characters, got {len(name)}"
    elif any(not c.isprintable() for c in name):
        problem = "must not contain control characters"
    elif name.isdigit():
        problem = "must not be only digits (it would read as an execution id)"
    if problem:
        raise UsageError(f"--name {name!r}: a saved execution's name {problem}")
    store.save_execution(execution_id, name, description, now)


def saved_inputs(store: Store, flow: Flow, name: str) -> tuple[dict[str, Any], list[str]]:
    """The inputs of the execution saved as ``name``, as a preset for a new execution
    of ``flow``, and the names of those ``flow`` no longer declares (left out). A
    UsageError when the saved execution is of another flow."""
    saved = store.find_saved(name)
    if (saved.namespace, saved.flow_id) != (flow.namespace, flow.id):
        raise UsageError(
            f"--from-saved {name!r}: execution {saved.id} is of flow {saved.flow_key}, "
            f"not {flow.key}"
        )
    declared = {spec.name for spec in flow.inputs}
    kept = {k: v for k, v in saved.inputs.items() if k in declared}
    return kept, [k for k in saved.inputs if k not in declared]


def restart_execution(
    store: Store,
    execution_id: int,
    now: float,
    *,
    from_task: str | None = None,
    given_inputs: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> list[str]:
    """Restart an ended execution in place (see :meth:`Store.restart_execution`):
    UsageError when it has not ended FAILED, KILLED or WARNING or ``from_task`` is not
    one of its tasks; new inputs are checked and merged over the old ones. ``latest``
    moves it to its flow's newest revision first."""
    execution = store.get_execution(execution_id)
    if execution.state not in (State.FAILED, State.KILLED, State.WARNING):
        raise Conflict(
            f"execution {execution_id} is {execution.state.value}; restart needs FAILED, "
            "KILLED or WARNING"
        )
    revision_id, inputs = _run_again(store, execution, from_task, given_inputs, latest)
    return store.restart_execution(
        execution_id, now, from_task=from_task, inputs=inputs, revision_id=revision_id
    )


def replay_execution(
    store: Store,
    execution_id: int,
    from_task: str,
    now: float,
    *,
    given_inputs: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> int:
    """A new execution replaying ``execution_id`` from ``from_task`` (see
    :meth:`Store.replay_execution`); UsageError for an execution that has not ended
    or a task it does not have. New inputs are checked and merged over the old ones.
    ``latest`` replays the flow's newest revision instead of the pinned one."""
    execution = store.get_execution(execution_id)
    if not execution.state.terminal:
        raise Conflict(
            f"execution {execution_id} is {execution.state.value}; replay needs an ended "
            f"execution (ordo kill {execution_id}, or wait for it)"
        )
    revision_id, inputs = _run_again(store, execution, from_task, given_inputs, latest)
    return store.replay_execution(
        execution_id, from_task, now, inputs=inputs, revision_id=revision_id
    )


def _run_again(
    store: Store,
    execution: ExecutionRow,
    from_task: str | None,
    given_inputs: Mapping[str, Any] | None,
    latest: bool,
) -> tuple[int, dict[str, Any] | None]:
    """The revision a restart or replay of ``execution`` runs (its flow's newest when
    ``latest``) and its inputs (the new ones checked and merged over the old, else None);
    UsageError when ``from_task`` is not one of its tasks."""
    revision_id = execution.revision_id
    if latest:
        newest = store.find_flow(execution.namespace, execution.flow_id, None)
        revision_id = newest.id if newest is not None else revision_id
    flow = store.flow_of(revision_id)
    _check_task(flow, from_task, "--from")
    inputs = None
    if given_inputs:
        inputs = definitions.coerce_inputs(flow, {**execution.inputs, **given_inputs})
    return revision_id, inputs


def _check_task(flow: Flow, task_id: str | None, option: str) -> None:
    if task_id is not None and task_id not in {t.id for t in flow.tasks}:
        known = ", ".join(t.id for t in flow.tasks)
        tip = did_you_mean(task_id, (t.id for t in flow.tasks))
        raise UsageError(f"{option}: {flow.key} has no task {task_id!r}{tip} (tasks: {known})")


def _flow_run_if(
    flow: Flow, inputs: Mapping[str, Any], labels: Mapping[str, str], evaluate: Evaluator | None
) -> tuple[str, str] | None:
    """None to run; else ``(SKIP or STOP, why)``. A run_if that cannot be evaluated is a
    DefinitionError naming the flow."""
    if flow.run_if is None:
        return None
    facts = {
        "inputs": dict(inputs),
        "execution": {
            "flow": flow.id,
            "namespace": flow.namespace,
            "labels": dict(labels),
            "inputs": dict(inputs),
        },
    }
    try:
        function = function_run_if(flow.run_if)
        if function is not None:
            value = (evaluate or evaluate_once)(function["function"], flow.base_dir, facts)
        else:
            context = templating.make_context(inputs, {}, flow.vars, facts["execution"], {})
            value = templating.render(flow.run_if, context)
        answer, why = templating.run_if_answer(value)
    except (OrdoError, ValueError) as exc:
        raise DefinitionError([Problem(f"flow {flow.key}: run_if: {exc}", flow.path)]) from exc
    if answer == "RUN":
        return None
    return answer, f"flow run_if answered {answer}" + (f": {why}" if why else "")


def evaluate_once(function: str, base_dir: str, facts: Mapping[str, Any]) -> Any:
    """Evaluate a run_if function in a python host started for it (outside a worker)."""
    from ordo.runners.python import PythonRunner

    runner = PythonRunner(1)
    try:
        return runner.evaluate(function, base_dir, facts)
    finally:
        runner.close()


def find_child_flow(store: Store, ref: str, namespace: str, revision: int | None) -> Revision:
    """The flow a flow task names (``namespace/id``, or ``id`` in the parent's
    namespace); NotFound names the flows that exist."""
    ns, _, flow_id = ref.rpartition("/")
    ns = ns or namespace
    found = store.find_flow(ns, flow_id, revision)
    if found is None:
        known = ", ".join(r.flow.key for r in store.list_flows()) or "none"
        which = f" revision {revision}" if revision is not None else ""
        raise NotFound(
            f"unknown flow '{ns}/{flow_id}'{which} (flows in the store: {known}; "
            "add one with: ordo flows add FILE)"
        )
    return found


def check_children(store: Store, flow: Flow) -> None:
    """Every flow task naming a fixed flow names one that is stored: a DefinitionError
    names each that is not (at the task's line), with the flows that exist."""
    problems = []
    for task in flow.tasks:
        ref = task.spec.get("flow") if task.type == "flow" else None
        if not isinstance(ref, str) or templating.has_template(ref) or "group" in task.spec:
            continue  # (a task group's chain is stored when it first runs)
        revision = task.spec.get("revision")
        try:
            find_child_flow(store, ref, flow.namespace, revision)
        except NotFound as exc:
            problems.append(Problem(f"task '{task.id}': {exc}", flow.path, task.line))
    if problems:
        raise DefinitionError(problems)


def start_child(
    store: Store,
    claim: Claim,
    ref: str,
    given_inputs: Mapping[str, Any],
    now: float,
    *,
    revision: int | None = None,
    wait: bool = True,
    evaluate: Evaluator | None = None,
    namespace: str | None = None,
) -> int:
    """Start a child execution of flow ``ref`` for the attempt ``claim`` (or, the first
    attempt after a restart, restart the child its attempt before waited for, if that
    ended badly); its id. ``namespace`` (a handler's ``init={'project_id': ...}``) is
    where an unqualified ``ref`` is looked for instead of the parent's namespace. The
    child inherits its parent's scope and must be in it. Raises OrdoError (unknown
    flow or namespace, a namespace out of scope, bad inputs, nesting deeper than
    :data:`MAX_DEPTH`) with the reason."""
    again = store.child_to_restart(claim)
    if again is not None:  # the first attempt after a restart: its failed child restarts
        try:
            store.restart_child(again, claim, now)
            return again
        except IllegalTransition:
            raise  # a bug, not "nothing to run again": never hidden
        except Conflict:
            pass  # nothing in it to run again: start a new child
    parent_flow = store.flow_of(claim.revision_id)
    parent = store.get_execution(claim.execution_id)
    scope = parent.scope
    group = parent_flow.task(claim.task_id).spec.get("group")
    if isinstance(group, Mapping):  # a task group: this value runs the group's chain
        child = _group_revision(store, claim, Flow.from_dict(group), now)
        given_inputs = parent.inputs
    else:
        given_ns, _, _ = ref.rpartition("/")
        if namespace is not None:
            if given_ns and given_ns != namespace:
                raise OrdoError(
                    f"flow {ref!r} names namespace {given_ns!r} but init asks for {namespace!r}"
                )
            check_namespace(store, namespace, scope)
        child = find_child_flow(store, ref, namespace or parent_flow.namespace, revision)
        check_namespace(store, child.flow.namespace, scope, exists=False)
    chain = store.lineage(claim.execution_id)
    if len(chain) >= MAX_DEPTH:
        path = " -> ".join(key for _, key in [*chain, (0, child.flow.key)])
        raise OrdoError(f"subflow recursion deeper than {MAX_DEPTH}: {path}")
    return start_execution(
        store, child, given_inputs, now, evaluate=evaluate, parent=claim, wait=wait, scope=scope
    )


def _group_revision(store: Store, claim: Claim, chain: Flow, now: float) -> Revision:
    """The stored revision of a task group's chain (stored with the files of the flow
    revision it belongs to the first time it runs; the same one after)."""
    source = json.dumps(chain.to_dict(), sort_keys=True)
    digest = hashlib.sha256(source.encode()).hexdigest()
    scripts = store.revision_scripts(claim.revision_id)
    return store.add_revision(chain, source, digest, now, scripts=scripts)


def _group_fork(store: Store, flow: Flow, execution: ExecutionRow) -> dict[str, Any] | None:
    """In a task group's chain, ``fork``: the value (and its index) this chain runs."""
    if flow.group is None or execution.parent_attempt_id is None:
        return None
    run = store.calling_run(execution.parent_attempt_id)
    if run is None:
        return None
    _, index, value = store.fork_item(run)
    return None if index is None else {"index": index, "value": value}


def check_namespace(
    store: Store, namespace: str, scope: Sequence[str] | None, *, exists: bool = True
) -> None:
    """OrdoError when ``namespace`` holds no flow (``exists``) or is not among the
    namespaces ``scope`` allows (None: every one); each message names it."""
    if exists:
        known = store.namespaces()
        if namespace not in known:
            tip = did_you_mean(namespace, known)
            raise OrdoError(
                f"namespace {namespace!r} does not exist{tip} (namespaces: "
                f"{', '.join(known) or 'none'})"
            )
    if scope is not None and namespace not in scope:
        raise OrdoError(
            f"namespace {namespace!r} is outside this execution's scope: it was started "
            f"with a token limited to namespaces {', '.join(scope) or 'none'}"
        )


class Prepared(Struct, frozen=True):
    """A claim ready to run, or the outcome it already has (a template error)."""

    claim: Claim
    context: RunContext | None = None
    outcome: Outcome | None = None


def prepare(
    store: Store,
    claim: Claim,
    log: LogSink,
    env: Mapping[str, str],
    box: SecretBox | None = None,
    vault: Revealed | None = None,
    step: StepRow | None = None,
) -> Prepared:
    """Render the task's fields for this attempt. A missing reference fails the attempt
    (reason ``template``) with a message naming the reference and the task.

    Every secret of the store is decrypted with ``box`` (none without one) for
    ``secret('NAME')`` in templates and ``system.secret`` in handlers; their values, a
    connection's credentials and the task's env values named like a secret are the
    context's ``secrets``, masked in what the attempt reports (outcomes returned here
    are masked already).

    A for_each task run is expanded here (the outcome carries the items); an item sees
    ``fork``. A template run_if is answered here (SKIP and STOP are outcomes); a
    function run_if is left to the worker (``ctx.run_if``). A ``connection:`` is looked
    up and merged into the fields. Pre and post checks are rendered by the worker when
    it runs them (``ctx.checks``), against what is read here. ``vault``: the secrets
    already read and decrypted (a worker reads them once per step), else read here.
    ``step``: the step a ``@task``'s task run is, when the caller has it (it started
    the step), else read here."""
    if vault is None:
        vault = (box or SecretBox(None)).reveal(store.secret_rows())
    prepared = _prepare(store, claim, log, env, vault, step)
    if prepared.outcome is not None:
        hidden = forms([*vault.values.values(), *vault.hidden])
        return Prepared(claim, outcome=masked(prepared.outcome, hidden))
    return prepared


def _prepare(
    store: Store,
    claim: Claim,
    log: LogSink,
    env: Mapping[str, str],
    vault: Revealed,
    step: StepRow | None = None,
) -> Prepared:
    flow = store.flow_of(claim.revision_id)
    if stored.is_stored(flow):
        flow = stored.placed(flow, lambda: store.revision_scripts(claim.revision_id))
    task = flow.task(claim.task_id)
    fork: dict[str, Any] | None = None
    if flow.group is not None:
        fork = _group_fork(store, flow, store.get_execution(claim.execution_id))
    if task.for_each is not None:
        _, index, value = store.fork_item(claim.task_run_id)
        if index is None:
            return Prepared(claim, outcome=_expand(store, flow, task, claim, env, vault))
        fork = {"index": index, "value": value}
    if not task.spec.get("step"):
        step = None
    elif step is None or step.run_id != claim.task_run_id:
        step = store.step_of_run(claim.task_run_id)
    if step is not None:  # a @task called by a flow function: its arguments as given
        given = step.value if isinstance(step.value, Mapping) else {}
        raw: dict[str, Any] = {
            "fields": {**task.spec, "args": list(given.get("args") or ())},
            "with": dict(given.get("kwargs") or {}),
            "env": dict(task.env),
            "run_if": None,
        }
        return _context(store, flow, task, claim, raw, log, env, vault, fork)
    raw = {
        # (a task group's chain is rendered in each value's own execution)
        "fields": {k: v for k, v in task.spec.items() if k != "group"},
        "with": dict(task.with_),
        "env": dict(task.env),
        "run_if": task.run_if if function_run_if(task.run_if) is None else None,
    }
    try:
        if _templated(task, raw):
            rendered = _render(store, flow, claim, raw, env, fork, vault=vault)
        else:
            rendered = raw
    except templating.TemplateError as exc:
        message = f"task '{task.id}': {exc}"
        return Prepared(claim, outcome=Outcome(State.FAILED, reason="template", error=message))
    if rendered["run_if"] is not None:
        decided = decide_run_if(task, rendered["run_if"])
        if decided is not None:
            return Prepared(claim, outcome=decided)
    return _context(store, flow, task, claim, rendered, log, env, vault, fork)


#: Whether a task's own fields hold templates, by the task (a flow's tasks never change):
#: looking costs about 15 µs an attempt. Its id, with the task kept to tell reuse apart.
_TEMPLATED: dict[int, tuple[Task, bool]] = {}


def _templated(task: Task, raw: Mapping[str, Any]) -> bool:
    """``templating.has_template(raw)``, ``raw`` being made of ``task``'s own fields."""
    known = _TEMPLATED.get(id(task))
    if known is not None and known[0] is task:
        return known[1]
    if len(_TEMPLATED) >= 4096:
        _TEMPLATED.clear()
    found = templating.has_template(raw)
    _TEMPLATED[id(task)] = (task, found)
    return found


def _context(
    store: Store,
    flow: Flow,
    task: Task,
    claim: Claim,
    rendered: Mapping[str, Any],
    log: LogSink,
    env: Mapping[str, str],
    vault: Revealed,
    fork: Mapping[str, Any] | None,
) -> Prepared:
    """The run context of a task whose fields are rendered: its connection merged in,
    its secrets to mask, its run_if function and checks to evaluate."""
    fields = dict(rendered["fields"])
    secrets: list[str] = [*vault.values.values(), *vault.hidden]
    if "connection" in fields:
        try:
            connection = store.get_connection(str(fields["connection"]))
        except NotFound as exc:
            message = f"task '{task.id}': {exc}"
            return Prepared(
                claim, outcome=Outcome(State.FAILED, reason="connection", error=message)
            )
        fields = with_connection(fields, connection)
        secrets += connection.secrets()
    task_env = {k: str(v) for k, v in rendered["env"].items()}
    secrets += secret_values(task_env)
    ctx = RunContext(
        execution_id=claim.execution_id,
        task_run_id=claim.task_run_id,
        attempt_id=claim.attempt_id,
        attempt_number=claim.number,
        task=task,
        fields=fields,
        with_=rendered["with"],
        env=task_env,
        base_dir=flow.base_dir,
        log=log,
        timeout=task.timeout,
        run_if=function_run_if(task.run_if),
        secrets=forms(secrets),
        vault=vault,
    )
    if ctx.run_if is not None:
        ctx.facts = _facts(store, flow, claim, fork)
    if task.pre_checks or task.post_checks:
        ctx.checks = check_plan(store, flow, task, claim, env, fork, vault)
    return Prepared(claim, context=ctx)


def check_plan(
    store: Store,
    flow: Flow,
    task: Task,
    claim: Claim,
    env: Mapping[str, str],
    fork: Mapping[str, Any] | None,
    vault: Revealed | None = None,
) -> CheckPlan:
    """The task's checks for this attempt, with what their templates and functions need
    read from the store now: a check's templates see what the task's fields see, and a
    post check also the attempt's own outputs as ``outputs.<task>``."""
    checks = (*task.pre_checks, *task.post_checks)
    fields = [dict(c.fields) for c in checks]
    functions = any(c.kind == "function" for c in checks)
    if not functions and not templating.has_template(fields):
        return CheckPlan(task.pre_checks, task.post_checks)
    execution = store.get_execution(claim.execution_id)
    if functions:
        outputs = store.outputs(claim.execution_id, flow=flow)
    else:
        needed = templating.referenced_tasks(fields, flow.vars, every=[t.id for t in flow.tasks])
        outputs = store.outputs(claim.execution_id, needed, flow=flow) if needed else {}
    info = execution.template_info()

    def render(check: Check, own: Mapping[str, Any] | None) -> Check:
        if not templating.has_template(dict(check.fields)):
            return check
        seen = outputs if own is None else {**outputs, task.id: own}
        context = templating.make_context(
            execution.inputs,
            seen,
            flow.vars,
            info,
            env,
            fork,
            (vault or Revealed()).get,
            lineage(store, execution),
            child_results(store),
        )
        return Check(check.kind, templating.render(dict(check.fields), context))

    facts = {
        "inputs": dict(execution.inputs),
        "outputs": outputs,
        "execution": info,
        "fork": dict(fork) if fork is not None else None,
    }
    return CheckPlan(task.pre_checks, task.post_checks, render, facts)


def decide_run_if(task: Task, value: Any) -> Outcome | None:
    """None to run; else the SKIPPED outcome (reason ``skip`` or ``stop``) or the
    FAILED one (reason ``run_if``) when the answer is not one of the allowed."""
    try:
        answer, why = templating.run_if_answer(value)
    except ValueError as exc:
        return Outcome(State.FAILED, reason="run_if", error=f"task '{task.id}': {exc}")
    if answer == "RUN":
        return None
    text = f"run_if answered {answer}" + (f": {why}" if why else "")
    return Outcome(State.SKIPPED, reason=answer.lower(), error=why or text)


def with_connection(fields: Mapping[str, Any], connection: Connection) -> dict[str, Any]:
    """A sql or http task's fields with its connection's: the URL (an http task's
    ``url`` is then relative to the base URL) and headers (the task's win)."""
    merged = dict(fields)
    config = connection.config
    if "url" in config and "url" not in fields:
        merged["url"] = config["url"]
    if "base_url" in config:
        from urllib.parse import urljoin

        merged["url"] = urljoin(
            str(config["base_url"]).rstrip("/") + "/", str(fields.get("url", "")).lstrip("/")
        )
    if config.get("headers"):
        merged["headers"] = {**config["headers"], **(fields.get("headers") or {})}
    return merged


def _expand(
    store: Store, flow: Flow, task: Task, claim: Claim, env: Mapping[str, str], vault: Revealed
) -> Outcome:
    """The for_each task run's items, or why there are none."""
    source = task.for_each
    try:
        items = (
            _render(store, flow, claim, source, env, vault=vault)
            if templating.has_template(source)
            else source
        )
    except templating.TemplateError as exc:
        return Outcome(State.FAILED, reason="template", error=f"task '{task.id}': for_each: {exc}")
    if not isinstance(items, list | tuple):
        kind = type(items).__name__
        return Outcome(
            State.FAILED,
            reason="for_each",
            error=f"task '{task.id}': for_each expected a list, got {kind} (from {source!r})",
        )
    return Outcome(State.SUCCESS, forks=tuple(items))


def _render(
    store: Store,
    flow: Flow,
    claim: Claim,
    raw: Any,
    env: Mapping[str, str],
    fork: Mapping[str, Any] | None = None,
    *,
    vault: Revealed,
) -> Any:
    execution = store.get_execution(claim.execution_id)
    needed = templating.referenced_tasks(raw, flow.vars, every=[t.id for t in flow.tasks])
    outputs = store.outputs(claim.execution_id, needed, flow=flow) if needed else {}
    context = templating.make_context(
        execution.inputs,
        outputs,
        flow.vars,
        execution.template_info(),
        env,
        fork,
        vault.get,
        lineage(store, execution),
        child_results(store),
    )
    return templating.render(raw, context)


def child_results(store: Store) -> Callable[[int], Mapping[str, Any]]:
    """A child execution's results by path, read when a template first uses them:
    every task's outputs (``tasks``) and its vars (``vars``, see
    :func:`ordo.engine.policy.child_results`)."""

    def read(child_id: int) -> Mapping[str, Any]:
        child = store.get_execution(child_id)
        flow = store.flow_of(child.revision_id)

        def outputs_of(tasks: Iterable[str]) -> Mapping[str, Any]:
            return store.outputs(child_id, tasks, flow=flow)

        facts = OutputFacts(child.inputs, child.template_info(), outputs_of)
        return policy.child_results(flow, facts)

    return read


def lineage(store: Store, execution: ExecutionRow) -> templating.Lineage | None:
    """What a child execution's templates see of its parent (``parent.outputs``,
    ``parent.vars``, the parent's vars under ``vars``, ``parents.<task>``), each read
    from the store only when a template uses it; None for an execution without one."""
    if execution.parent_id is None:
        return None
    parent = store.get_execution(execution.parent_id)
    flow = store.flow_of(parent.revision_id)
    read: dict[str, Mapping[str, Any]] = {}

    def outputs() -> Mapping[str, Any]:
        if "outputs" not in read:
            read["outputs"] = store.outputs(parent.id, flow=flow)
        return read["outputs"]

    def context() -> Mapping[str, Any]:
        info = parent.template_info()
        above = lineage(store, parent)
        return templating.make_context(
            parent.inputs, outputs(), flow.vars, info, {}, None, None, above
        )

    def parents() -> Mapping[str, Any]:
        """The outputs of the flow tasks the calling flow task depends on."""
        if execution.parent_attempt_id is None:
            return {}
        task_id = store.calling_task(execution.parent_attempt_id)
        if task_id is None or task_id not in flow._by_id:
            return {}
        siblings = [d for d in flow.task(task_id).depends_on if flow.task(d).type == "flow"]
        found = outputs()
        return {d: found.get(d, {}) for d in siblings}

    return templating.Lineage(outputs, templating.DeferredVars(flow.vars, context), parents)


def _facts(
    store: Store, flow: Flow, claim: Claim, fork: Mapping[str, Any] | None
) -> dict[str, Any]:
    """What a run_if function may take as keyword arguments."""
    execution = store.get_execution(claim.execution_id)
    return {
        "inputs": dict(execution.inputs),
        "outputs": store.outputs(claim.execution_id, flow=flow),
        "execution": execution.template_info(),
        "fork": dict(fork) if fork is not None else None,
    }


def execution_info(execution: ExecutionRow) -> dict[str, Any]:
    """What templates see as ``execution``."""
    return execution.template_info()


def connect_setup(
    store: Store, request: Mapping[str, Any], claim: Claim | None = None
) -> dict[str, Any]:
    """What a handler's ``this.connect`` runs: the runner type, its fields (with the
    named connection's merged in) and the values to mask. OrdoError says what is
    missing, or that the namespace it asks for (``init``) does not exist or is out of
    the calling execution's scope."""
    if request.get("namespace") is not None:
        scope = store.get_execution(claim.execution_id).scope if claim else None
        check_namespace(store, str(request["namespace"]), scope)
    fields = dict(request.get("fields") or {})
    name = request.get("connection")
    secrets: list[str] = []
    if name:
        connection = store.get_connection(str(name))
        kind = connection.type
        fields = with_connection({**fields, "connection": name}, connection)
        secrets = connection.secrets()
    else:
        kind = str(request.get("type") or "")
        if kind not in ("sql", "http"):
            raise OrdoError(
                "this.connect needs a connection name or connection_type='sql' or 'http', "
                f"found {request.get('type')!r}"
            )
    if not fields.get("url"):
        raise OrdoError(f"this.connect: a {kind} call needs a url (or a connection)")
    shape = request.get("shape")
    if shape and kind != "sql":
        raise OrdoError(f"this.connect: {shape}= runs SQL, but this is a {kind} call")
    if kind == "sql" and not (fields.get("query") or fields.get("script")):
        raise OrdoError(
            "this.connect: a sql call needs query=, script=, fetchval=, fetch=, fetchrow= "
            "or execute="
        )
    return {"type": kind, "fields": fields, "secrets": secrets}


def look_up(store: Store, claim: Claim, request: Mapping[str, Any]) -> dict[str, Any]:
    """A handler's ``system.flow``, ``system.connection`` and ``system.execution``."""
    op = request.get("op")
    if op == "flow_info":
        parent = store.flow_of(claim.revision_id)
        revision = request.get("revision")
        found = find_child_flow(
            store, str(request["flow"]), parent.namespace, int(revision) if revision else None
        )
        flow = found.flow
        return {
            "flow": {
                "id": flow.id,
                "namespace": flow.namespace,
                "revision": found.revision,
                "description": flow.description,
                "labels": dict(flow.labels),
                "inputs": {i.name: i.to_dict() for i in flow.inputs},
                "tasks": [t.id for t in flow.tasks],
            }
        }
    if op == "project":
        name = str(request.get("name"))
        check_namespace(store, name, store.get_execution(claim.execution_id).scope)
        return {"project": {"id": name, "name": name}}
    if op == "connection":
        connection = store.get_connection(str(request["name"]))
        return {
            "connection": {"name": connection.name, "type": connection.type, **connection.config}
        }
    if op == "execution":
        wanted = request.get("id")
        execution = store.get_execution(int(wanted) if wanted else claim.execution_id)
        return {
            "execution": {
                **execution.template_info(),
                "state": execution.state.value,
                "reason": execution.reason,
                "outputs": dict(execution.outputs or {}),
                "children": [c.id for c in store.children(execution.id)],
            }
        }
    raise OrdoError(f"unknown request {op!r}")
