"""How many claims a worker takes beyond its free slots (``Worker.ahead``): ``prefetch``,
more while its attempts end quickly (up to ``prefetch_max``), none with ``prefetch=0``."""

from __future__ import annotations

import time
from pathlib import Path

from ordo import engine
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings


def _worker_after(store: Store, folder: Path, flow: str, **settings: object) -> Worker:
    path = folder / "flow.yaml"
    path.write_text(flow)
    now = time.time()
    ex_id = engine.start_execution(store, engine.register_flow(store, path, now), {}, now)
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2, **settings),  # type: ignore[arg-type]
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )
    try:
        assert worker.run_execution(ex_id) is State.SUCCESS
    finally:
        worker.close()
    return worker


def _fan(n: int, task: str) -> str:
    return "id: fan\ntasks:\n" + "".join(f"  - {{id: t{i}, {task}}}\n" for i in range(n))


def test_quick_attempts_have_more_claimed_ahead_up_to_the_maximum(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    worker = _worker_after(store, tmp_path, _fan(40, "type: python, function: 'noop:noop'"))
    assert worker.ahead() > 16  # (a no-op runs in about a millisecond: 64 at most)
    assert worker.ahead() <= 64


def test_slow_attempts_keep_prefetch_and_prefetch_0_takes_none_ahead(
    store: Store, tmp_path: Path
) -> None:
    slow = _worker_after(store, tmp_path, _fan(2, "type: shell, command: 'sleep 0.3'"))
    assert slow.ahead() == 16  # 2 slots run 1.3 of them in 0.2 s: prefetch is more
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    flow = _fan(10, "type: python, function: 'noop:noop'")
    assert _worker_after(store, tmp_path, flow, prefetch=0).ahead() == 0
    assert _worker_after(store, tmp_path, flow, prefetch=4, prefetch_max=8).ahead() == 8
