"""``ordo run``'s progress: the live panel counts for_each items as task runs and names
running items ``task[i]#attempt``; the plain lines name items too."""

from __future__ import annotations

import io
import textwrap
import time
from pathlib import Path

from ordo import engine
from ordo.cli.display import LiveProgress, Progress
from ordo.model import Outcome, State
from ordo.runners import make_runners
from ordo.store import Store
from ordo.store.records import Claim
from ordo.worker import Worker, WorkerSettings

FLOW = """\
id: fan
tasks:
  - id: list
    type: shell
    command: echo 'items=[1,2,3,4,5,6,7]' >> "$ORDO_OUTPUTS"
  - id: work
    type: shell
    depends_on: [list]
    for_each: "{{ outputs.list.items }}"
    command: echo {{ fork.value }}
  - id: report
    type: shell
    depends_on: [work]
    command: echo done
"""


class Recorded(LiveProgress):
    """The panel as drawn after each event (Rich's live refresh is not started)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frames: list[str] = []
        self.seen_running: set[str] = set()

    def begin(self, queued: str | None = None) -> None:
        pass

    def end(self) -> None:
        pass

    def started(self, claim: Claim) -> None:
        super().started(claim)
        self.seen_running |= set(self.running.values())
        self.frames.append(self._render().plain)

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
        super().finished(claim, outcome, retrying)
        self.frames.append(self._render().plain)


def _run(store: Store, tmp_path: Path, make: type[Progress], **kw: object) -> Progress:
    path = tmp_path / "fan.yaml"
    path.write_text(textwrap.dedent(FLOW))
    now = time.time()
    revision = engine.register_flow(store, path, now)
    ex_id = engine.start_execution(store, revision, {}, now)
    listener = make(ex_id, revision.flow, io.StringIO(), store=store, **kw)
    worker = Worker(
        store,
        make_runners(2),
        settings=WorkerSettings(slots=2),
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        listener=listener,
    )
    try:
        assert worker.run_execution(ex_id) is State.SUCCESS
    finally:
        worker.close()
    return listener


def test_live_panel_counts_for_each_items_as_task_runs(store: Store, tmp_path: Path) -> None:
    panel = _run(store, tmp_path, Recorded)
    assert isinstance(panel, Recorded)
    # list, 7 items, report: 9 task runs; never more done than there are
    assert "9/9 done" in panel.frames[-1]
    for frame in panel.frames:
        done, total = frame.split(" done")[0].rsplit(" ", 1)[1].split("/")
        assert int(done) <= int(total), frame
    items = {name for name in panel.seen_running if name.startswith("work[")}
    assert items == {f"work[{i}]#1" for i in range(7)}
    assert "list#1" in panel.seen_running and "report#1" in panel.seen_running


def test_plain_progress_names_for_each_items(store: Store, tmp_path: Path) -> None:
    lines = _run(store, tmp_path, Progress, quiet=False)
    assert isinstance(lines.out, io.StringIO)
    text = lines.out.getvalue()
    assert "work forked into 7 items" in text
    for i in range(7):
        assert f"work[{i}] RUNNING (attempt 1)" in text
        assert f"work[{i}] SUCCESS" in text
