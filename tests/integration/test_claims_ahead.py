"""How many claims a worker takes beyond its free slots (``Worker.ahead``): ``prefetch``,
more while its attempts end quickly (up to ``prefetch_max``), none with ``prefetch=0``.
Seen in what was claimed: the attempts one step claimed share its time."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from ordo import engine
from ordo.model import State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.worker import Worker, WorkerSettings


def _largest_claim(store: Store, folder: Path, flow: str, **settings: object) -> int:
    """Run ``flow`` with 2 slots; the most attempts one step claimed."""
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
    return max(Counter(a.started_at for a in store.attempts(ex_id)).values())


def _fan(n: int, task: str) -> str:
    return "id: fan\ntasks:\n" + "".join(f"  - {{id: t{i}, {task}}}\n" for i in range(n))


def test_quick_attempts_have_more_claimed_ahead_up_to_the_maximum(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    largest = _largest_claim(store, tmp_path, _fan(300, "type: python, function: 'noop:noop'"))
    assert 2 + 16 < largest <= 2 + WorkerSettings().prefetch_max  # (a no-op: a millisecond)


def test_slow_attempts_keep_prefetch_and_prefetch_0_takes_none_ahead(
    store: Store, tmp_path: Path
) -> None:
    slow = _fan(24, "type: shell, command: 'sleep 0.05'")  # 2 slots run 8 in 0.2 s
    assert _largest_claim(store, tmp_path, slow) == 2 + 16
    (tmp_path / "noop.py").write_text("def noop():\n    return None\n")
    quick = _fan(40, "type: python, function: 'noop:noop'")
    assert _largest_claim(store, tmp_path, quick, prefetch=0) <= 2
    assert _largest_claim(store, tmp_path, quick, prefetch=4, prefetch_max=8) <= 2 + 8
