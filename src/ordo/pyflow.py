"""Flows written as Python functions: ``@flow`` and ``@task``.

::

    from ordo import flow, task

    @task(retry={"attempts": 3, "delay": "2s"}, timeout="5m")
    def extract(day: str) -> list[dict]: ...

    @flow(id="etl", namespace="analytics")
    def etl(day: str = "2026-01-01") -> dict:
        rows = extract(day)                        # a task run of the execution
        parts = [load.submit(c) for c in chunks(rows)]   # in parallel
        return {"loaded": sum(p.result() for p in parts)}

ordo reads a ``@flow`` from the file without running it
(:mod:`ordo.definitions.pyflows`): its parameters are the flow's inputs, the dict it
returns the flow's outputs. When an execution runs it, every call of a ``@task`` is a
task run of that execution, with its own attempts, retry policy, timeout, logs and
outputs, recorded as a step: run again (a retry, a restart, a resume after a crash) the
flow function starts from the top and every step that had completed returns what it
returned then, without running again (see docs/python.md, "Durable replay").

Outside a running flow a ``@task`` is just its function (so it can be unit tested), and
so is a ``@flow``.

This module is imported by user code in task hosts: it imports nothing heavy.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Set by the python host while it runs a flow function: how a ``@task`` call becomes a
#: step of the execution (``call(task, args, kwargs, wait)`` -> a Future).
_runner: Any = None


def flow(
    function: Callable[..., Any] | None = None,
    *,
    id: str | None = None,
    namespace: str = "default",
    description: str = "",
    labels: dict[str, str] | None = None,
    triggers: list[dict[str, Any]] | None = None,
    notify: list[dict[str, Any]] | None = None,
    timeout: str | float | None = None,
    concurrency: dict[str, Any] | int | None = None,
    retry: dict[str, Any] | None = None,
    queue: str | None = None,
    active: bool = True,
    allow_manual: bool = True,
) -> Any:
    """Mark a function as a flow. The options are read from the file as written (they
    must be literals); called as a plain function, it is just the function."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__ordo_flow__ = {"id": id or fn.__name__, "namespace": namespace}  # type: ignore[attr-defined]
        return fn

    return mark(function) if function is not None else mark


def task(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    retry: dict[str, Any] | None = None,
    timeout: str | float | None = None,
    queue: str | None = None,
) -> Any:
    """Mark a function as a task: called inside a running ``@flow`` it is a task run of
    the execution (``.submit(...)`` starts it and returns at once, ``.result()`` waits);
    anywhere else it is the function itself."""

    def wrap(fn: Callable[..., Any]) -> Task:
        options = {"name": name or fn.__name__, "retry": retry, "timeout": timeout, "queue": queue}
        return Task(fn, options)

    return wrap(function) if function is not None else wrap


class Task:
    """A ``@task`` function: call it, or ``.submit()`` it."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options
        self._signature: Any = None

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments of a call by name (TypeError for a wrong call, as Python's)."""
        if self._signature is None:
            import inspect

            self._signature = inspect.signature(self.fn)
        arguments: dict[str, Any] = self._signature.bind(*args, **kwargs).arguments
        return arguments

    @property
    def target(self) -> str:
        """``module:qualname``: how a worker imports it."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _runner is None:
            return self.fn(*args, **kwargs)
        return _runner(self, args, kwargs, True).result()

    def submit(self, *args: Any, **kwargs: Any) -> Future:
        """Start the task run and return at once; ``.result()`` waits for its value.
        Outside a running flow, the function runs now."""
        if _runner is None:
            return Future.done(self.fn(*args, **kwargs))
        future: Future = _runner(self, args, kwargs, False)
        return future

    def __repr__(self) -> str:
        return f"<ordo task {self.options['name']} ({self.target})>"


class Future:
    """A submitted task run: ``result()`` waits for what the task returned (and raises
    ``ordo.this.TaskFailed`` when it failed after its retries)."""

    def __init__(self, wait: Callable[[], Any]) -> None:
        self._wait = wait
        self._done = False
        self._value: Any = None

    @classmethod
    def done(cls, value: Any) -> Future:
        future = cls(lambda: value)
        future.result()
        return future

    def result(self) -> Any:
        if not self._done:
            self._value = self._wait()
            self._done = True
        return self._value


#: At most this many other submitted steps are asked about with each wait.
ALSO = 200


class Steps:
    """How a running flow function's ``@task`` calls become steps of its attempt (the
    python host sets one as ``_runner`` while the function runs). A call asks the worker
    for the step's task run (a completed one, run again, answers at once): the worker
    either has it run in this host, by ``here``, as the attempt it started for it, and
    is told how it ended (asked, when it did not succeed: its retries run elsewhere), or
    runs it on another host and answers when it has ended (a task with a timeout or a
    queue of its own). ``.submit()`` only queues its request: the queue goes to the
    worker in one request, whose task runs start in one transaction, as soon as the
    function waits for anything or returns."""

    def __init__(self, this: Any, here: Callable[..., dict[str, Any]] | None = None) -> None:
        self.this = this
        self.here = here
        self.pending: list[Future] = []
        self.queued: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (request, answer)
        #: the answers of submitted steps not known to have ended, by task run id (a
        #: wait for one is also answered with those of these that have ended)
        self.open: dict[int, dict[str, Any]] = {}

    def __call__(
        self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], wait: bool
    ) -> Future:
        number = self.this._next_step()
        arguments = task.bind(args, kwargs)  # a wrong call: Python's TypeError
        name = task.options["name"]
        bad = _not_json(name, arguments)
        request = {
            "op": "task",
            "number": number,
            "name": name,
            "args": [] if bad else list(args),
            "kwargs": {} if bad else dict(kwargs),
            "bad": bad,
        }
        answer: dict[str, Any] = {}
        if wait:
            self.flush()
            here = self.here is not None
            answer.update(self.this._call({**request, "wait": True, "here": here}))
            if "attempt" in answer and "state" not in answer:
                answer.update(self._run_here(task, args, kwargs, answer))
        else:
            self.queued.append((request, answer))

        def wait_for() -> Any:
            self.flush()
            done = answer
            if "error" in done:  # refused when submitted (an unknown task, a replay)
                error = self.this.ReplayError if done.get("replay") else self.this.OrdoCallError
                raise error(done["error"])
            if "state" not in done:
                done = self._wait(int(answer["run"]))
            if done["state"] in ("SUCCESS", "WARNING"):
                return done.get("value")
            raise self.this.TaskFailed(
                f"task {name} (step {number}) ended {done['state']}: "
                f"{done.get('reason') or 'no reason recorded'}",
                done["state"],
                done.get("run"),
            )

        future = Future(wait_for)
        if not wait:
            self.pending.append(future)
        return future

    def _run_here(
        self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], begun: dict[str, Any]
    ) -> dict[str, Any]:
        """Run the step's attempt ``begun`` in this host; how its task run ended. A
        success that wrote no outputs file is only told (the value is the one returned,
        as JSON gives it back); anything else is asked, and answered once the task run
        has ended (after its retries, if any)."""
        import json
        import os

        assert self.here is not None
        env = begun.get("env") or {}
        reply = self.here(task.fn, args, kwargs, int(begun["attempt"]), env)
        end = {"op": "task_end", "attempt": begun["attempt"], "reply": reply}
        plain = reply.get("ok") and not reply.get("answer") and not reply.get("state")
        files = [env.get("ORDO_OUTPUTS"), env.get("ORDO_METRICS")]
        if plain and not any(f and os.path.exists(f) for f in files):
            self.this._channel.tell(end)
            value = json.loads(json.dumps((reply.get("result") or {}).get("return")))
            return {"state": "SUCCESS", "value": value, "run": begun["run"]}
        answer: dict[str, Any] = self.this._call(end)
        return answer

    def _wait(self, run: int) -> dict[str, Any]:
        """Wait for the task run of a submitted step; learn how the other submitted
        steps that have ended by then ended too (no request to wait for those)."""
        also = [r for r in self.open if r != run][:ALSO]
        done: dict[str, Any] = self.this._call({"op": "task_wait", "run": run, "also": also})
        for key, ended in (done.pop("also", None) or {}).items():
            found = self.open.pop(int(key), None)
            if found is not None:
                found.update(ended)
        self.open.pop(run, None)
        return done

    def flush(self) -> None:
        """Send the queued ``.submit()`` requests, as one."""
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        found = self.this._call({"op": "tasks", "steps": [r for r, _ in queued]})
        for (_, answer), got in zip(queued, found["answers"], strict=True):
            answer.update(got)
            if "state" not in answer and "run" in answer:
                self.open[int(answer["run"])] = answer

    def finish(self) -> None:
        """The flow function returned: wait for the steps it submitted and never waited
        for (they belong to its attempt)."""
        self.flush()
        for future in self.pending:
            try:
                future.result()
            except Exception:
                continue


def _not_json(task: str, arguments: dict[str, Any]) -> str | None:
    """Why a step's arguments cannot be stored (naming the first that cannot), or None."""
    import json

    for name, value in arguments.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            kind = type(value).__name__
            return f"argument {name!r} of task {task} is a {kind}, which cannot be stored as JSON"
    return None
