"""Helpers for tests that drive real ``ordo`` processes against a store (imported by
the test modules; the fixtures are in conftest.py), and for tests that run executions
in this process with a real Worker."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ordo import engine
from ordo.clock import Clock
from ordo.engine import open_store
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings


def ordo(
    cmd: list[str], env: dict[str, str], db: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``ordo ARGS --db DB`` to its end; its output captured."""
    return subprocess.run(
        [*cmd, *args, "--db", db], env=env, capture_output=True, text=True, timeout=120
    )


def start(cmd: list[str], env: dict[str, str], db: str, *args: str) -> subprocess.Popen[bytes]:
    """Start ``ordo ARGS --db DB`` in the background, its output dropped."""
    return subprocess.Popen(
        [*cmd, *args, "--db", db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def load_factor() -> float:
    """How much slower than an idle machine this one is now: the 1-minute load average
    per CPU, at least 1 and at most 10. Deadlines of waits are multiplied by it, so that
    a test on a loaded 2-core runner gets the time its processes need rather than
    failing; the cap keeps a hung wait from outliving the per-test timeout (600 s)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return min(10.0, max(1.0, load / (os.cpu_count() or 1)))


def patient(seconds: float) -> float:
    """``seconds`` (the deadline on an idle machine) scaled by :func:`load_factor`."""
    return seconds * load_factor()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds
    (scaled by the machine's load)."""
    deadline = time.monotonic() + patient(timeout)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def state_of(db: str, execution_id: int) -> State | None:
    """An execution's state, or None while it does not exist yet."""
    store = open_store(db)
    try:
        return store.get_execution(execution_id).state
    except Exception:
        return None
    finally:
        store.close()


def work_on(
    store: Store,
    folder: Path,
    ex_id: int,
    *,
    clock: Clock | None = None,
    slots: int = 2,
    **settings_kw: Any,
) -> tuple[int, State]:
    """Run execution ``ex_id`` to its end with a Worker in this process (real runners,
    ``folder`` as HOME); its id and final state."""
    worker = Worker(
        store,
        make_runners(slots),
        settings=WorkerSettings(slots=slots, kill_grace=1.0, **settings_kw),
        clock=clock,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
    try:
        return ex_id, worker.run_execution(ex_id)
    finally:
        worker.close()


def run_file(
    store: Store,
    folder: Path,
    path: Path,
    inputs: Mapping[str, Any] | None = None,
    *,
    clock: Clock | None = None,
    slots: int = 2,
    **settings_kw: Any,
) -> tuple[int, State]:
    """Register the flow file ``path``, start it and run it to its end in this process."""
    now = clock.now() if clock else time.time()
    revision = engine.register_flow(store, path, now)
    ex_id = engine.start_execution(store, revision, inputs or {}, now)
    return work_on(store, folder, ex_id, clock=clock, slots=slots, **settings_kw)
