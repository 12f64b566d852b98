"""What ``ordo run`` shows while it works: a live panel on a terminal (Rich, imported
only then), one plain line per event otherwise; and the final summary table."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ordo import views
from ordo.cli.common import fmt_duration, short, table
from ordo.model import Flow, Outcome
from ordo.store import Store
from ordo.store.records import Claim


class Progress:
    """Plain lines: ``HH:MM:SS task RUNNING (attempt n)`` and each end; a for_each item
    is named ``task[i]``."""

    def __init__(
        self, execution_id: int, flow: Flow, out: TextIO, quiet: bool, store: Store | None = None
    ) -> None:
        self.execution_id = execution_id
        self.flow = flow
        self.out = out
        self.quiet = quiet
        self.store = store
        self.started_at = time.monotonic()
        self._forking = {t.id for t in flow.tasks if t.for_each is not None}
        self._labels: dict[int, str] = {}  # task run id -> task[i], for for_each items

    def begin(self, queued: str | None = None) -> None:
        """The execution started, or (``queued`` says why) waits for its flow's limit."""
        if self.quiet:
            return
        what = f"queued: {queued}" if queued else "started"
        self._line(f"execution {self.execution_id} of {self.flow.key} {what}")

    def end(self) -> None:
        pass

    def started(self, claim: Claim) -> None:
        if not self.quiet:
            self._line(f"{self.name(claim)} RUNNING (attempt {claim.number})")

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
        if self.quiet:
            return
        text = f"{self.name(claim)} {outcome.state.value}"
        if outcome.forks is not None:
            count = len(outcome.forks)
            text = f"{self.name(claim)} forked into {count} item{'' if count == 1 else 's'}"
        if outcome.error:
            text += f": {short(outcome.error, 100)}"
        if retrying:
            text += " (will retry)"
        self._line(text)

    def name(self, claim: Claim) -> str:
        """The task run's label (``task`` or ``task[i]``); in a child execution prefixed
        with that execution's id."""
        label = self.label(claim)
        if claim.execution_id == self.execution_id:
            return label
        return f"{claim.execution_id}/{label}"

    def label(self, claim: Claim) -> str:
        """``task[i]`` for an item of this execution's for_each task (the labels are
        read once per fork: items are created together), else the task's id."""
        if (
            claim.execution_id != self.execution_id
            or claim.task_id not in self._forking
            or self.store is None
        ):
            return claim.task_id
        if claim.task_run_id not in self._labels:
            for run in self.store.task_runs(self.execution_id):
                self._labels[run.id] = run.label
        return self._labels.get(claim.task_run_id, claim.task_id)

    def _line(self, text: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()


class LiveProgress(Progress):
    """A Rich live panel: task runs done of all (a for_each item counts as one task run
    once its task has forked), counts by state, the running attempts, elapsed time."""

    def __init__(self, execution_id: int, flow: Flow, out: TextIO, store: Store | None = None):
        super().__init__(execution_id, flow, out, quiet=False, store=store)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.running: dict[int, str] = {}
        self.counts: dict[str, int] = {}
        self.total = len(flow.tasks)
        self.live = Live(
            console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render
        )

    def begin(self, queued: str | None = None) -> None:
        self.live.start()

    def end(self) -> None:
        self.live.stop()

    def started(self, claim: Claim) -> None:
        self.running[claim.attempt_id] = f"{self.name(claim)}#{claim.number}"

    def finished(self, claim: Claim, outcome: Outcome, retrying: bool) -> None:
        self.running.pop(claim.attempt_id, None)
        if outcome.forks is not None:
            if claim.execution_id == self.execution_id:
                self.total += len(outcome.forks) - 1  # the task becomes its items
            return
        if claim.execution_id == self.execution_id:
            key = "RETRYING" if retrying else outcome.state.value
            self.counts[key] = self.counts.get(key, 0) + 1
        if not outcome.ok and not retrying:
            self.console.print(
                f"[red]{self.name(claim)} {outcome.state.value}[/]: "
                f"{short(outcome.error or outcome.reason or '', 100)}"
            )

    def _render(self) -> Any:
        from rich.text import Text

        elapsed = time.monotonic() - self.started_at
        done = sum(v for k, v in self.counts.items() if k != "RETRYING")
        parts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(self.counts.items()))
        names = ", ".join(sorted(self.running.values())[:8])
        more = len(self.running) - 8
        if more > 0:
            names += f" (+{more})"
        return Text.assemble(
            (f"execution {self.execution_id} {self.flow.key} ", "bold"),
            f"{done}/{self.total} done  {parts}  {elapsed:.1f}s\n",
            ("running: ", "cyan"),
            names or "-",
        )


def listener_for(
    store: Store, execution_id: int, flow: Flow, *, quiet: bool, out: TextIO | None = None
) -> Progress:
    """The progress display on ``out`` (standard output by default; standard error when
    standard output carries a JSON document): a live panel on a terminal, else lines."""
    out = out or sys.stdout
    if out.isatty() and not quiet:
        return LiveProgress(execution_id, flow, out, store)
    return Progress(execution_id, flow, out, quiet, store)


SUMMARY_ROWS = 30


def summary(store: Store, execution_id: int, out: TextIO) -> None:
    """The final table: one row per task run (only the ones that did not succeed when
    there are many), counts by state, then the execution's state and reason."""
    ex = store.get_execution(execution_id)
    runs = views.in_order(store.task_runs(execution_id))
    shown = runs
    if len(runs) > SUMMARY_ROWS:
        shown = [r for r in runs if r.state.value != "SUCCESS"][:SUMMARY_ROWS]
    rows = [
        [
            r.label,
            r.state.value,
            str(r.attempts),
            fmt_duration(r.started_at, r.ended_at),
            short(r.reason or "", 70),
        ]
        for r in shown
    ]
    if rows:
        out.write(table(["TASK", "STATE", "ATTEMPTS", "DURATION", "REASON"], rows) + "\n")
    if len(shown) < len(runs):
        counts: dict[str, int] = {}
        for r in runs:
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
        text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        out.write(f"{len(runs)} task runs: {text} (ordo executions show {ex.id} lists all)\n")
    line = f"execution {ex.id} {ex.flow_key}: {ex.state.value} in " + fmt_duration(
        ex.started_at, ex.ended_at
    )
    if ex.reason:
        line += f" ({short(ex.reason, 120)})"
    out.write(line + "\n")
