"""What a running task may call: ``from ordo import this``.

``output`` and ``metric`` append to the files named by ``$ORDO_OUTPUTS`` and
``$ORDO_METRICS``, the same files a shell task writes, so the mechanism is one. Works in
python tasks and in any program a task starts (it inherits the variables).

Inside a python task (a function, a script, or a handler ``handler(system, this,
inputs)``, which gets this module as ``this`` and :data:`system`), it also reaches the
worker running the task: :func:`flow` starts child executions, :func:`connect` runs a
sql or http call on a connection (recorded as a task run of this execution), and
``return this.success(...)`` / :func:`warning` / :func:`fail` say how the task ends.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

# Every python host imports this module at boot: typing is for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    _Mapping = Mapping[str, Any]
else:
    _Mapping = Mapping

__all__ = [
    "ChildFailed",
    "Result",
    "Skip",
    "Stop",
    "connect",
    "fail",
    "flow",
    "inputs",
    "log",
    "metric",
    "output",
    "success",
    "system",
    "warning",
]


class _Inputs(_Mapping):
    """The task's ``with`` values (also given to functions as keyword arguments)."""

    def __init__(self) -> None:
        self._given: dict[str, Any] | None = None

    def _set(self, values: dict[str, Any] | None) -> None:
        """Used by the python task host; ``None`` means read ``$ORDO_INPUTS`` again."""
        self._given = values

    def _data(self) -> dict[str, Any]:
        if self._given is None:
            self._given = json.loads(os.environ.get("ORDO_INPUTS", "{}"))
        return self._given

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Any:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"inputs({self._data()!r})"


inputs = _Inputs()


def _file(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise RuntimeError(f"ordo.this works only inside an ordo task (${variable} is not set)")
    return path


def output(key: str, value: Any) -> None:
    """Record an output of this attempt; ``value`` must be JSON-serializable."""
    if not key or "=" in key or "\n" in key:
        raise ValueError(f"an output key must be non-empty without '=' or newlines: {key!r}")
    with open(_file("ORDO_OUTPUTS"), "a", encoding="utf-8") as f:
        f.write(f"{key}={json.dumps(value)}\n")


def metric(
    name: str, value: float, kind: str = "counter", tags: Mapping[str, str] | None = None
) -> None:
    """Record a metric: ``kind`` is ``counter`` or ``duration`` (seconds)."""
    if kind not in ("counter", "duration"):
        raise ValueError(f"kind must be 'counter' or 'duration', not {kind!r}")
    record = {"name": name, "value": float(value), "kind": kind, "tags": dict(tags or {})}
    with open(_file("ORDO_METRICS"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def log(message: str) -> None:
    """A line in this attempt's log (standard output)."""
    sys.stdout.write(f"{message}\n")
    sys.stdout.flush()


class Skip(Exception):
    """Raise from a task or a run_if function: this task ends SKIPPED (the message is
    its reason) and its dependents still run, as run_if's ``SKIP``."""

    ordo_answer = "SKIP"


class Stop(Exception):
    """Raise from a task or a run_if function: this task ends SKIPPED and so does
    everything downstream of it (independent branches go on), as run_if's ``STOP``."""

    ordo_answer = "STOP"


class OrdoCallError(RuntimeError):
    """A call into ordo failed (unknown flow or connection, bad inputs, ...)."""


class ChildFailed(OrdoCallError):
    """A child execution (or a call made with :func:`connect`) did not succeed; the
    message says why. ``state`` is its final state, ``id`` its execution id if any."""

    def __init__(self, message: str, state: str, id: int | None = None) -> None:
        super().__init__(message)
        self.state = state
        self.id = id


class _Channel:
    """Requests to the worker running this task, one JSON line each way. Set up by the
    python task host; absent elsewhere."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self._out = os.fdopen(write_fd, "wb", buffering=0)
        self._in = os.fdopen(read_fd, "rb")

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self._out.write((json.dumps(request, default=str) + "\n").encode())
        line = self._in.readline()
        if not line:
            raise OrdoCallError("the worker running this task went away")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            if answer.get("replay"):
                raise ReplayError(answer["error"])
            raise OrdoCallError(answer["error"])
        return answer

    def tell(self, request: dict[str, Any]) -> None:
        """A request that has no answer."""
        self._out.write((json.dumps({**request, "tell": True}, default=str) + "\n").encode())


_channel: _Channel | None = None
#: The attempt of a ``@task`` its flow function runs in this host, while it runs: its
#: calls into ordo are made as that attempt.
_acting: int | None = None


def _call(request: dict[str, Any]) -> dict[str, Any]:
    if _channel is None:
        raise OrdoCallError(f"ordo.this.{request['op']}() works only inside an ordo python task")
    if _acting is not None:
        request = {**request, "as": _acting}
    return _channel.call(request)


class Child:
    """A child execution started with ``flow(..., wait=False)``."""

    def __init__(self, execution_id: int, flow_id: str) -> None:
        self.id = execution_id
        self.flow = flow_id

    def wait(self) -> dict[str, Any]:
        """Block until the child ends; its outputs, or ChildFailed saying why not."""
        answer = _call({"op": "wait", "id": self.id})
        if answer["state"] not in ("SUCCESS", "WARNING"):
            raise ChildFailed(
                f"child execution {self.id} ({self.flow}) ended {answer['state']}: "
                f"{answer.get('reason') or 'no reason recorded'}",
                answer["state"],
                self.id,
            )
        outputs: dict[str, Any] = answer.get("outputs") or {}
        return outputs

    def __repr__(self) -> str:
        return f"Child(id={self.id}, flow={self.flow!r})"


def _namespace(init: Mapping[str, Any] | None, namespace: str | None, what: str) -> str | None:
    """The namespace asked for with ``init={'project_id': ...}`` or ``namespace=``."""
    if init is not None:
        if not isinstance(init, Mapping) or set(init) - {"project_id", "namespace"}:
            raise OrdoCallError(
                f"{what}: init takes 'project_id' (or 'namespace'): the namespace to run in, "
                f"found {init!r}"
            )
        for key in ("project_id", "namespace"):
            if key in init:
                if namespace is not None and init[key] != namespace:
                    raise OrdoCallError(
                        f"{what}: init[{key!r}] is {init[key]!r} but namespace= is {namespace!r}"
                    )
                namespace = init[key]
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise OrdoCallError(f"{what}: a namespace is a non-empty name, found {namespace!r}")
    return namespace


def flow(
    flow_id: str,
    *,
    wait: bool = True,
    revision: int | None = None,
    init: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    **inputs: Any,
) -> Any:
    """Start flow ``flow_id`` (``namespace/id``, or ``id`` in this flow's namespace) as a
    child execution with ``inputs``. ``wait=True``: block until it ends and return its
    outputs (ChildFailed if it did not succeed); ``wait=False``: return a :class:`Child`
    with ``.id`` and ``.wait()``. ``init={'project_id': NS}`` (Cloudomation's spelling,
    ``NS`` from ``system.project(name)['id']``) or ``namespace=NS`` looks ``flow_id`` up
    in namespace ``NS``: OrdoCallError when it does not exist or is outside the scope of
    the token that started this execution."""
    ns = _namespace(init, namespace, "this.flow")
    request = {"op": "flow", "flow": flow_id, "revision": revision, "inputs": inputs}
    if ns is not None:
        request["namespace"] = ns
    answer = _call({**request, "number": _next_step()})
    child = Child(int(answer["id"]), flow_id)
    return child.wait() if wait else child


#: Cloudomation's spellings of one SQL statement, and what each returns.
SQL_SHAPES = ("fetchval", "fetch", "fetchrow", "execute")
_CONNECTOR_TYPES = {"sql": "sql", "http": "http", "rest": "http"}


def connect(
    connection: str | None = None,
    *,
    connection_type: str | None = None,
    connector_type: str | None = None,
    init: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    **fields: Any,
) -> Any:
    """Run one sql or http call and return its outputs (``rows``... for sql, ``status``
    and ``body``... for http), recorded as a task run of this execution. Name a stored
    ``connection`` (its type is known), or give ``connection_type="sql"`` / ``"http"``
    (or Cloudomation's ``connector_type="SQL"`` / ``"REST"`` / ``"HTTP"``, any case)
    with the fields (``url``, ``query``, ``method``, ``json``, ...). ChildFailed if the
    call failed.

    Cloudomation's SQL spellings give the statement and shape the answer:
    ``fetchval=SQL`` the first column of the first row (None without rows),
    ``fetch=SQL`` the rows (a list of dicts), ``fetchrow=SQL`` the first row (None
    without rows), ``execute=SQL`` the number of rows changed. ``init`` and
    ``namespace`` are checked as :func:`flow`'s (the namespace must exist and be in
    scope); a connection belongs to no namespace, so they change nothing else."""
    kind = _connection_type(connection_type, connector_type)
    shapes = [name for name in SQL_SHAPES if name in fields]
    given = [k for k in ("query", "script", *shapes) if k in fields]
    if shapes and len(given) > 1:
        raise OrdoCallError(
            f"this.connect: give one statement, found {' and '.join(f'{k}=' for k in given)}"
        )
    shape = shapes[0] if shapes else None
    if shape is not None:
        fields["query"] = fields.pop(shape)
        if shape in ("fetchval", "fetchrow"):
            fields.setdefault("max_rows", 1)
    request: dict[str, Any] = {
        "op": "connect",
        "connection": connection,
        "type": kind,
        "fields": fields,
    }
    if shape is not None:
        request["shape"] = shape
    ns = _namespace(init, namespace, "this.connect")
    if ns is not None:
        request["namespace"] = ns
    answer = _call({**request, "number": _next_step()})
    if answer["state"] != "SUCCESS":
        raise ChildFailed(answer.get("message") or "the call failed", answer["state"])
    outputs: dict[str, Any] = answer.get("outputs") or {}
    return _shaped(outputs, shape)


def _connection_type(connection_type: Any, connector_type: Any) -> str | None:
    """``connection_type`` or its alias ``connector_type``, in any case, as sql or http."""
    found = []
    for given in (connection_type, connector_type):
        if given is None:
            continue
        kind = _CONNECTOR_TYPES.get(str(given).lower()) if isinstance(given, str) else None
        if kind is None:
            raise OrdoCallError(
                f"this.connect: unknown connection type {given!r}; one of SQL, REST, HTTP "
                "(any case)"
            )
        found.append(kind)
    if len(set(found)) > 1:
        raise OrdoCallError(
            f"this.connect: connection_type={connection_type!r} and "
            f"connector_type={connector_type!r} disagree; give one"
        )
    return found[0] if found else None


def _shaped(outputs: dict[str, Any], shape: str | None) -> Any:
    rows = outputs.get("rows") or []
    if shape == "fetch":
        return rows
    if shape == "fetchrow":
        return rows[0] if rows else None
    if shape == "fetchval":
        if not rows:
            return None
        first = outputs.get("columns") or list(rows[0])
        return rows[0].get(first[0]) if first else None
    if shape == "execute":
        return outputs.get("rowcount")
    return outputs


class Result:
    """How a handler ends: ``return this.success(...)``, ``this.warning(...)``,
    ``this.fail(...)``; ``outputs`` become the task's outputs."""

    def __init__(self, state: str, message: str | None, outputs: Mapping[str, Any]) -> None:
        self.state = state
        self.message = message
        self.outputs = dict(outputs)


def success(message: str | None = None, **outputs: Any) -> Result:
    return Result("SUCCESS", message, outputs)


def warning(message: str, **outputs: Any) -> Result:
    """The task ends WARNING (the execution too, unless something failed)."""
    return Result("WARNING", message, outputs)


def fail(message: str, **outputs: Any) -> Result:
    """The task ends FAILED with ``message``."""
    return Result("FAILED", message, outputs)


class _System:
    """What a handler's ``system`` argument offers: look things up in the store."""

    def flow(self, flow_id: str, revision: int | None = None) -> dict[str, Any]:
        """A stored flow: id, namespace, revision, description, inputs, tasks."""
        found: dict[str, Any] = _call({"op": "flow_info", "flow": flow_id, "revision": revision})
        return dict(found["flow"])

    def connection(self, name: str) -> dict[str, Any]:
        """A stored connection's name, type and settings (credentials included: keep them
        out of outputs and logs)."""
        return dict(_call({"op": "connection", "name": name})["connection"])

    def execution(self, execution_id: int | None = None) -> dict[str, Any]:
        """An execution (this one by default): state, inputs, outputs, parent, children."""
        return dict(_call({"op": "execution", "id": execution_id})["execution"])

    def project(self, name: str) -> dict[str, Any]:
        """Namespace ``name`` (Cloudomation's "project") as ``{'id': name, 'name':
        name}``: a namespace has no other id, so ``id`` is what ``init={'project_id':
        ...}`` takes. OrdoCallError when no flow is stored in it or it is outside the
        scope of the token that started this execution."""
        return dict(_call({"op": "project", "name": name})["project"])

    def secret(self, name: str) -> str:
        """The value of secret ``name`` (``ordo secrets set NAME``). It is masked as
        ``****`` in this task's logs, outputs and errors, in the encodings ordo knows;
        OrdoCallError for an unknown secret or one that cannot be decrypted."""
        return str(_call({"op": "secret", "name": name})["value"])


system = _System()


# -- durable steps ---------------------------------------------------------------------
# Each call into ordo that has an effect or a value the code may depend on (a @task,
# flow, connect, now, random) is a step, numbered in the order this attempt makes them.
# Run again (a retry, a restart, a resume after a crash), the code starts from the top
# and each step that had completed answers what it answered then.
_steps = 0


def _reset_steps() -> None:
    """A new attempt starts (the python host calls this before every task)."""
    global _steps
    _steps = 0


def _act_as(attempt: int | None, steps: int) -> tuple[int | None, int]:
    """Make calls as ``attempt`` (a ``@task`` its flow function runs in this host; None:
    as the task itself), numbering steps from ``steps``; what it was before."""
    global _acting, _steps
    before = (_acting, _steps)
    _acting, _steps = attempt, steps
    return before


def _next_step() -> int:
    global _steps
    _steps += 1
    return _steps


class TaskFailed(ChildFailed):
    """A ``@task`` called by a flow function did not succeed, after its retries: the
    message says why, ``state`` is how it ended, ``id`` its task run."""


class ReplayError(OrdoCallError):
    """Run again, the code made a different call at a step than it had made before
    (``non-deterministic replay: step 3 was load(...), now is extract(...)``): steps
    must come in the same order every time (read the time and random numbers with
    :func:`now` and :func:`random`, which are steps too)."""


def now() -> Any:
    """The time (a timezone-aware UTC ``datetime``), recorded as a step: run again, the
    code gets the same time. Outside a running task, the time now."""
    from datetime import UTC, datetime

    if _channel is None:
        return datetime.now(UTC)
    answer = _call({"op": "now", "number": _next_step()})
    return datetime.fromisoformat(str(answer["value"]))


def random() -> float:
    """A random number in [0, 1), recorded as a step: run again, the code gets the
    same number. Outside a running task, a new one."""
    import random as _random

    if _channel is None:
        return _random.random()
    answer = _call({"op": "random", "number": _next_step()})
    return float(answer["value"])
