"""ordo from Python: run a flow and get its execution, or start, watch and steer
executions, on the embedded store, on a PostgreSQL store, or through ``ordo server``.

::

    import ordo

    ex = ordo.run("flows/etl.yaml", inputs={"day": "2026-12-01"})
    ex.state, ex.outputs

    client = ordo.Client()                      # or Client(db=URL), Client(server=URL, token=T)
    h = client.start("analytics/etl", inputs={"day": "2026-12-01"})
    h.wait(timeout=60).state

The answers are the same whichever the client talks to (they are built from the same
documents: :func:`ordo.views.execution_document` here, the API's there), and errors are
ordo's own (:mod:`ordo.errors`) with the CLI's messages. On a store, :meth:`Client.wait`
works the execution in this process until it ends, as ``ordo run`` does (any other
worker of the store may take part); on a server, the server's workers do and it waits.
"""

from __future__ import annotations

import atexit
import builtins
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct

from ordo.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    OrdoError,
    StoreError,
    UsageError,
)
from ordo.model import State

#: How often a client of a server asks whether an execution has ended (seconds).
POLL = 0.2


class TaskRun(Struct, frozen=True):
    """One task run of an execution (``task`` is ``load`` or, for a for_each item,
    ``load[2]``; a Python flow's ``@task`` calls and a handler's calls are task runs
    too)."""

    id: int
    task: str
    state: State
    attempts: int
    outputs: Any
    reason: str | None


class Execution(Struct, frozen=True):
    """An execution as it was when read: ``outputs`` are the flow's outputs (None
    until it ends well), ``task_runs`` empty in a list of executions."""

    id: int
    flow: str
    state: State
    outputs: Mapping[str, Any] | None
    reason: str | None
    inputs: Mapping[str, Any]
    labels: Mapping[str, str]
    task_runs: tuple[TaskRun, ...]
    parent_id: int | None
    started_at: float | None
    ended_at: float | None

    @property
    def ended(self) -> bool:
        return self.state.terminal

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Execution:
        """From an execution document (``ordo executions show --json``, the API)."""
        runs = tuple(
            TaskRun(
                id=int(r["id"]),
                task=str(r["task"]),
                state=State(r["state"]),
                attempts=len(r.get("attempts") or ()),
                outputs=r.get("outputs"),
                reason=r.get("reason"),
            )
            for r in doc.get("task_runs") or ()
        )
        return cls(
            id=int(doc["id"]),
            flow=f"{doc['namespace']}/{doc['flow']}",
            state=State(doc["state"]),
            outputs=doc.get("outputs"),
            reason=doc.get("reason"),
            inputs=doc.get("inputs") or {},
            labels=doc.get("labels") or {},
            task_runs=runs,
            parent_id=doc.get("parent_id"),
            started_at=_seconds(doc.get("started_at")),
            ended_at=_seconds(doc.get("ended_at")),
        )


class LogLine(Struct, frozen=True):
    """One line of an execution's log."""

    id: int
    task: str | None
    attempt: int | None
    stream: str
    line: str
    at: float | None


class Handle:
    """An execution started by :meth:`Client.start`: its ``id``, and waiting for it."""

    def __init__(self, client: Client, execution_id: int) -> None:
        self.client = client
        self.id = execution_id

    def wait(self, timeout: float | None = None) -> Execution:
        """The execution once it has ended (see :meth:`Client.wait`)."""
        return self.client.wait(self.id, timeout=timeout)

    def get(self) -> Execution:
        """The execution as it is now."""
        return self.client.get(self.id)

    def __repr__(self) -> str:
        return f"Handle(id={self.id})"


def run(
    flow: str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    *,
    db: str | None = None,
    server: str | None = None,
    token: str | None = None,
    workers: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Execution:
    """Run a flow (a file or package folder, or ``namespace/id`` of a stored flow) to its
    end and return its execution: ``ordo run`` from Python. The store is the CLI's
    (``ORDO_DB``, ``ORDO_HOME``) unless ``db`` or ``server`` says otherwise. The client
    it uses is kept for the next call (closed when the process exits)."""
    key = (db, server, token)
    with _SHARED_LOCK:  # one run at a time per process: they share the client
        client = _SHARED.get(key)
        if client is None:
            client = _SHARED[key] = Client(db, server=server, token=token)
            if len(_SHARED) == 1:
                atexit.register(_close_shared)
        return client.run(flow, inputs, labels=labels, workers=workers)


#: The clients ``run`` keeps between calls (its store connection, its worker and their
#: python hosts stay up: a second run of a small flow takes milliseconds).
_SHARED: dict[tuple[str | None, str | None, str | None], Client] = {}
_SHARED_LOCK = threading.Lock()


def _close_shared() -> None:
    with _SHARED_LOCK:
        for client in _SHARED.values():
            client.close()
        _SHARED.clear()


class Client:
    """Executions of one store (``db``: a URL or file path; by default the CLI's) or of
    one ``ordo server`` (``server`` and its ``token``)."""

    def __init__(
        self,
        db: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if db is not None and server is not None:
            raise UsageError("Client: give db= or server=, not both")
        self.environ = dict(os.environ if environ is None else environ)
        self._backend: _Store | _Server = (
            _Server(server, token) if server is not None else _Store(db, self.environ)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def run(
        self,
        flow: str | os.PathLike[str],
        inputs: Mapping[str, Any] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        workers: int | None = None,
    ) -> Execution:
        """Start ``flow`` and wait for its end (:meth:`start`, then :meth:`wait`)."""
        handle = self.start(flow, inputs, labels=labels)
        return self.wait(handle.id, workers=workers)

    def start(
        self,
        flow: str | os.PathLike[str],
        inputs: Mapping[str, Any] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        revision: int | None = None,
    ) -> Handle:
        """Start an execution of ``flow`` (a flow file or package folder, which is
        registered first, or ``namespace/id``/``id`` of a stored flow) and return at
        once. NotFound names a flow or file that does not exist."""
        found = self._backend.start(
            _flow_ref(flow), dict(inputs or {}), dict(labels or {}), revision
        )
        return Handle(self, found)

    def get(self, execution_id: int) -> Execution:
        """The execution as it is now; NotFound if there is none."""
        return Execution.from_document(self._backend.document(execution_id))

    def list(
        self,
        *,
        flow: str | None = None,
        state: State | str | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> list[Execution]:
        """Executions, newest first (without their task runs)."""
        wanted = None if state is None else State(str(state).upper())
        docs = self._backend.executions(flow, wanted, dict(labels or {}), limit)
        return [Execution.from_document(d) for d in docs]

    def wait(
        self, execution_id: int, *, timeout: float | None = None, workers: int | None = None
    ) -> Execution:
        """The execution once it has ended. On a store it is worked in this process
        (``workers`` slots) until then; on a server, the server's workers run it.
        TimeoutError after ``timeout`` seconds (the execution goes on)."""
        return self._backend.wait(execution_id, timeout, workers)

    def logs(self, execution_id: int, *, task: str | None = None) -> builtins.list[LogLine]:
        """The execution's log lines (of one task with ``task``), oldest first."""
        return self._backend.logs(execution_id, task)

    def kill(self, execution_id: int) -> Execution:
        """Kill a running execution and its children (``ordo kill``)."""
        self._backend.kill(execution_id)
        return self.get(execution_id)

    def restart(self, execution_id: int, *, from_task: str | None = None) -> Handle:
        """Run an ended execution again in place (``ordo restart``)."""
        self._backend.restart(execution_id, from_task)
        return Handle(self, execution_id)

    def replay(self, execution_id: int, *, from_task: str) -> Handle:
        """A new execution reusing what ended well before ``from_task`` (``ordo
        replay``)."""
        return Handle(self, self._backend.replay(execution_id, from_task))


def _flow_ref(flow: str | os.PathLike[str]) -> tuple[Literal["path", "key"], str]:
    """A flow file or folder that exists, else a stored flow's key."""
    text = os.fspath(flow)
    head, sep, name = text.rpartition(":")  # file.py:function, one @flow of several
    file = head if sep and head.endswith(".py") and name.isidentifier() else text
    if os.path.exists(file):
        return "path", os.path.abspath(file) + (text[len(file) :] if file != text else "")
    if (
        file.endswith((".yaml", ".yml", ".json", ".py"))
        or os.sep in file.rstrip("/").split("/", 1)[-1]
    ):
        raise NotFound(f"flow file not found: {file}")
    return "key", text


def _seconds(value: Any) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    from datetime import datetime

    return datetime.fromisoformat(str(value)).timestamp()


class _Store:
    """A client of a store: the commands the CLI uses."""

    def __init__(self, db: str | None, environ: Mapping[str, str]) -> None:
        from ordo.cli.common import database_url, secret_box
        from ordo.engine import open_store

        self.environ = environ
        self.url = database_url(db, environ)
        self.box = secret_box(environ)
        self.store = open_store(self.url)
        self.lock = threading.Lock()
        self._worker: Any = None
        self._worker_store: Any = None
        self._worker_slots = 0

    def close(self) -> None:
        self._drop_worker()
        self.store.close()

    def start(
        self,
        ref: tuple[str, str],
        inputs: dict[str, Any],
        labels: dict[str, str],
        revision: int | None,
    ) -> int:
        from ordo import engine, services

        kind, text = ref
        with self.lock:
            if kind == "path":
                found = engine.register_flow(self.store, text, time.time())
                engine.check_children(self.store, found.flow)
            else:
                namespace, _, flow_id = text.rpartition("/")
                found = services.find_flow(self.store, namespace or "default", flow_id, revision)
            return services.start(
                self.store, found, inputs, time.time(), started_by="python", labels=labels
            )

    def document(self, execution_id: int) -> dict[str, Any]:
        from ordo import views

        with self.lock:
            return views.execution_document(self.store, execution_id)

    def executions(
        self, flow: str | None, state: State | None, labels: dict[str, str], limit: int
    ) -> list[dict[str, Any]]:
        from ordo import views

        with self.lock:
            rows = self.store.list_executions(flow=flow, state=state, labels=labels, limit=limit)
            return [views.execution_dict(e) for e in rows]

    def wait(self, execution_id: int, timeout: float | None, workers: int | None) -> Execution:
        current = Execution.from_document(self.document(execution_id))
        if current.ended:
            return current
        worker = self._worker_for(workers)
        failed: list[BaseException] = []

        def work() -> None:
            try:
                worker.run_execution(execution_id)
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=work, name=f"ordo-wait-{execution_id}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            worker.stop()
            thread.join()
            self._drop_worker()  # stopped: the next wait makes a new one
        if failed:
            self._drop_worker()
            raise failed[0]
        ended = Execution.from_document(self.document(execution_id))
        if not ended.ended:
            still = ended.state.value
            raise TimeoutError(f"execution {execution_id} is still {still} after {timeout:g}s")
        return ended

    def _worker_for(self, workers: int | None) -> Any:
        """The worker this client works executions with, on its own connection; kept
        between waits (its python hosts stay up), made again for another slot count."""
        from ordo.engine import open_store
        from ordo.runners import make_runners
        from ordo.worker import Worker, WorkerSettings

        slots = workers or WorkerSettings().slots
        if self._worker is not None and self._worker_slots == slots:
            return self._worker
        self._drop_worker()
        store = open_store(self.url)  # the worker's own connection, used on its thread
        settings = WorkerSettings(slots=slots)
        runners = make_runners(slots)
        self._worker = Worker(store, runners, settings=settings, env=self.environ, secrets=self.box)
        self._worker_store, self._worker_slots = store, slots
        return self._worker

    def _drop_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker_store.close()
        self._worker, self._worker_store = None, None

    def logs(self, execution_id: int, task: str | None) -> list[LogLine]:
        with self.lock:
            self.store.get_execution(execution_id)
            names = {r.id: r.label for r in self.store.task_runs(execution_id)}
            attempts = {a.id: a for a in self.store.attempts(execution_id)}
            lines = []
            after = 0
            while True:
                page = self.store.logs(execution_id, after_id=after, limit=10_000)
                lines += page
                if len(page) < 10_000:
                    break
                after = page[-1].id
        found = []
        for x in lines:
            attempt = attempts.get(x.attempt_id)
            named = names.get(attempt.task_run_id) if attempt is not None else None
            number = attempt.number if attempt is not None else None
            found.append(LogLine(x.id, named, number, x.stream, x.line, x.at))
        return [x for x in found if task is None or x.task == task]

    def kill(self, execution_id: int) -> None:
        from ordo import services

        with self.lock:
            services.kill(self.store, execution_id, "python", time.time())

    def restart(self, execution_id: int, from_task: str | None) -> None:
        from ordo import services

        with self.lock:
            services.restart(self.store, execution_id, time.time(), from_task=from_task)

    def replay(self, execution_id: int, from_task: str) -> int:
        from ordo import services

        with self.lock:
            return services.replay(self.store, execution_id, from_task, time.time())


class _Server:
    """A client of ``ordo server``: the same through its REST API."""

    def __init__(self, server: str, token: str | None) -> None:
        import httpx

        if not server.startswith(("http://", "https://")):
            raise UsageError(f"server: expected http://HOST:PORT or https://..., found {server!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach ordo server {self.server}: {exc}") from None
        if response.status_code >= 400:
            raise _server_error(response.status_code, response)
        return None if not response.content else response.json()

    def start(
        self,
        ref: tuple[str, str],
        inputs: dict[str, Any],
        labels: dict[str, str],
        revision: int | None,
    ) -> int:
        kind, text = ref
        if kind == "path":
            from ordo.cli.remote import sendable

            path, data = sendable(text)
            media = "application/json" if path.endswith(".json") else "application/x-yaml"
            flow = self.call("POST", "/api/flows", content=data, headers={"Content-Type": media})
            namespace, flow_id = flow["namespace"], flow["id"]
        else:
            namespace, _, flow_id = text.rpartition("/")
            namespace = namespace or "default"
        body: dict[str, Any] = {"inputs": inputs, "labels": labels}
        if revision is not None:
            body["revision"] = revision
        doc = self.call("POST", f"/api/flows/{namespace}/{flow_id}/executions", json=body)
        return int(doc["id"])

    def document(self, execution_id: int) -> dict[str, Any]:
        doc: dict[str, Any] = self.call("GET", f"/api/executions/{execution_id}")
        return doc

    def executions(
        self, flow: str | None, state: State | None, labels: dict[str, str], limit: int
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "label": [f"{k}={v}" for k, v in labels.items()]}
        if flow is not None:
            params["flow"] = flow
        if state is not None:
            params["state"] = state.value
        page = self.call("GET", "/api/executions", params=params)
        return list(page["items"])

    def wait(self, execution_id: int, timeout: float | None, workers: int | None) -> Execution:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = Execution.from_document(self.document(execution_id))
            if current.ended:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"execution {execution_id} is still {current.state.value} after {timeout:g}s"
                )
            time.sleep(POLL)

    def logs(self, execution_id: int, task: str | None) -> list[LogLine]:
        found: list[LogLine] = []
        after = 0
        while True:
            page = self.call(
                "GET",
                f"/api/executions/{execution_id}/logs",
                params={"after": after, "limit": 10_000},
            )
            for x in page:
                found.append(
                    LogLine(
                        int(x["id"]),
                        x.get("task"),
                        x.get("attempt"),
                        str(x.get("stream")),
                        str(x.get("line")),
                        _seconds(x.get("at")),
                    )
                )
            if len(page) < 10_000:
                break
            after = found[-1].id
        return [x for x in found if task is None or x.task == task]

    def kill(self, execution_id: int) -> None:
        self.call("POST", f"/api/executions/{execution_id}/kill")

    def restart(self, execution_id: int, from_task: str | None) -> None:
        body = {} if from_task is None else {"from": from_task}
        self.call("POST", f"/api/executions/{execution_id}/restart", json=body)

    def replay(self, execution_id: int, from_task: str) -> int:
        doc = self.call("POST", f"/api/executions/{execution_id}/replay", json={"from": from_task})
        return int(doc["id"])


def _server_error(status: int, response: Any) -> OrdoError:
    """The API's error as the exception the store would have raised (same message)."""
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    message = str(body.get("detail", body))
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (401, 403):
        return Forbidden(message) if status == 403 else ConfigError(message)
    if status >= 500:
        return StoreError(message)
    return UsageError(message)


__all__ = ["Client", "Execution", "Handle", "LogLine", "TaskRun", "run"]
