"""Pictures as data: a flow's DAG, an execution's timeline and small bar charts, laid out
here and drawn as SVG by the templates. Pure: no I/O, times passed in."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape
from msgspec import Struct

from ordo.graph import waves
from ordo.model import State, Task
from ordo.store.records import AttemptRow, TaskRunRow

NODE_W, NODE_H = 168, 38
GAP_X, GAP_Y = 56, 14
PAD = 8
MIN_ZOOM = 0.6  # a DAG wider than the card shrinks to fit, down to this; then it scrolls


class Node(Struct, frozen=True):
    id: str
    type: str
    x: float
    y: float
    state: str  # a State's value, or "NONE" before the task has a run
    detail: str  # "for_each", "3 items", "2 attempts"...


class Edge(Struct, frozen=True):
    source: str
    target: str
    path: str  # an SVG path


class Dag(Struct, frozen=True):
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    node_w: int = NODE_W
    node_h: int = NODE_H


def dag(
    tasks: Sequence[Task],
    states: Mapping[str, State] | None = None,
    details: Mapping[str, str] | None = None,
) -> Dag:
    """Tasks in columns by wave (left to right); inside a column, ordered by where their
    dependencies are, so edges cross less. ``states`` colours them."""
    states = states or {}
    details = details or {}
    try:
        columns = waves(tasks)
    except ValueError:  # not a DAG: one column in file order
        columns = [[t.id for t in tasks]]
    by_id = {t.id: t for t in tasks}
    row: dict[str, float] = {}
    nodes: list[Node] = []
    for c, column in enumerate(columns):
        if c:
            column = sorted(
                column,
                key=lambda t: (
                    sum(row.get(d, 0) for d in by_id[t].depends_on)
                    / max(1, len(by_id[t].depends_on))
                ),
            )
        for r, task_id in enumerate(column):
            row[task_id] = r
            task = by_id[task_id]
            state = states.get(task_id)
            nodes.append(
                Node(
                    task_id,
                    task.type,
                    PAD + c * (NODE_W + GAP_X),
                    PAD + r * (NODE_H + GAP_Y),
                    state.value if state else "NONE",
                    details.get(task_id, "for_each" if task.for_each is not None else ""),
                )
            )
    at = {n.id: n for n in nodes}
    edges = []
    for task in tasks:
        for dep in dict.fromkeys(task.depends_on):
            if dep not in at or task.id not in at:
                continue
            a, b = at[dep], at[task.id]
            x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
            x2, y2 = b.x, b.y + NODE_H / 2
            mid = (x1 + x2) / 2
            edges.append(
                Edge(
                    dep,
                    task.id,
                    f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}",
                )
            )
    width = PAD * 2 + max(1, len(columns)) * (NODE_W + GAP_X) - GAP_X
    tallest = max((len(c) for c in columns), default=1)
    height = PAD * 2 + tallest * (NODE_H + GAP_Y) - GAP_Y
    return Dag(nodes, edges, width, height)


#: How a for_each node counts its items, in this order: "2 failed, 2 skipped of 4".
_ITEM_WORDS = (
    (State.SUCCESS, "succeeded"),
    (State.WARNING, "warned"),
    (State.FAILED, "failed"),
    (State.KILLED, "killed"),
    (State.SKIPPED, "skipped"),
    (State.RUNNING, "running"),
    (State.KILLING, "killing"),
)


def items_detail(items: list[TaskRunRow]) -> str:
    """A for_each task's items by state (states with none left out; not yet started
    ones are ``waiting``), then ``of N``: ``2 failed, 2 skipped of 4``."""
    counts: dict[State, int] = {}
    for r in items:
        counts[r.state] = counts.get(r.state, 0) + 1
    parts = [f"{counts[state]} {word}" for state, word in _ITEM_WORDS if counts.get(state)]
    waiting = len(items) - sum(counts.get(state, 0) for state, _ in _ITEM_WORDS)
    if waiting:
        parts.append(f"{waiting} waiting")
    return f"{', '.join(parts)} of {len(items)}"


def dag_svg(drawing: Dag, label: str) -> Markup:
    """The DAG as an SVG element (built here rather than in a template: a 1,000-task
    flow draws in a few milliseconds this way)."""
    w, h = drawing.node_w, drawing.node_h
    parts = [
        f'<svg role="img" aria-label="{escape(label)}" width="{drawing.width:.0f}" '
        f'height="{drawing.height:.0f}" viewBox="0 0 {drawing.width:.0f} {drawing.height:.0f}" '
        f'style="min-width: {drawing.width * MIN_ZOOM:.0f}px">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'class="arrowhead"/></marker></defs>'
    ]
    parts += [f'<path class="edge" d="{e.path}" marker-end="url(#arrow)"/>' for e in drawing.edges]
    for n in drawing.nodes:
        name = escape(n.id if len(n.id) <= 22 else n.id[:21] + "…")
        state = "" if n.state == "NONE" else f": {n.state}"
        detail = f", {escape(n.detail)}" if n.detail else ""
        shown = f" · {escape(n.detail)}" if n.detail else ""
        parts.append(
            f'<g class="node s-{n.state}" data-task="{escape(n.id)}" data-state="{n.state}" '
            f'transform="translate({n.x:.0f},{n.y:.0f})"><title>{escape(n.id)} '
            f"({escape(n.type)}){state}{detail}</title>"
            f'<rect width="{w}" height="{h}" rx="6"/>'
            f'<text x="10" y="16" class="name">{name}</text>'
            f'<text x="10" y="31" class="type"{_squeeze(n.type + shown, w)}>'
            f"{escape(n.type)}{shown}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _squeeze(text: str, width: int) -> str:
    """``textLength`` for a line of 11 px text too long for the node: drawn narrower
    rather than cut (``shell · 2 failed, 2 skipped of 4``)."""
    room = width - 20
    if len(text) * 6 <= room:
        return ""
    return f' textLength="{room}" lengthAdjust="spacingAndGlyphs"'


ROW_H = 22


class Bar(Struct, frozen=True):
    x: float
    width: float
    state: str
    title: str


class Lane(Struct, frozen=True):
    label: str
    y: float
    bars: list[Bar]
    run_id: int


class Tick(Struct, frozen=True):
    x: float
    label: str


class Timeline(Struct, frozen=True):
    """Lanes of bars; ``x`` and ``width`` of bars and ticks are percentages of the time
    track, so the page lays the chart out over the card's whole width."""

    lanes: list[Lane]
    ticks: list[Tick]
    row_h: int = ROW_H


MIN_BAR = 0.25  # percent: an attempt of a few milliseconds stays visible


def timeline(runs: Sequence[TaskRunRow], attempts: Sequence[AttemptRow], now: float) -> Timeline:
    """A Gantt chart: a lane per task run, a bar per attempt (running ones up to
    ``now``), on one time axis from the first start (0 %) to the last end (100 %)."""
    started = [a.started_at for a in attempts]
    start = min(started, default=now)
    end = max([a.ended_at or now for a in attempts] + [start + 1e-3])
    span = end - start
    scale = 100.0 / span
    by_run: dict[int, list[AttemptRow]] = {}
    for a in attempts:
        by_run.setdefault(a.task_run_id, []).append(a)
    lanes = []
    for i, run in enumerate(runs):
        bars = []
        for a in by_run.get(run.id, []):
            x = (a.started_at - start) * scale
            took = (a.ended_at or now) - a.started_at
            w = min(max(MIN_BAR, took * scale), 100.0 - x) if x < 100.0 else MIN_BAR
            bars.append(
                Bar(
                    x,
                    w,
                    a.state.value,
                    f"{run.label} attempt {a.number}: {a.state.value}, {seconds(took)}",
                )
            )
        lanes.append(Lane(run.label, i * ROW_H, bars, run.id))
    ticks = [Tick(25.0 * k, "+" + seconds(span * k / 4)) for k in range(5)]
    return Timeline(lanes, ticks)


class Column(Struct, frozen=True):
    x: float
    label: str
    parts: list[Bar]  # stacked from the bottom; Bar.x is the y of its top here
    total: int


class Chart(Struct, frozen=True):
    columns: list[Column]
    width: float
    height: float
    top: float  # the value the chart's height stands for
    unit: str = ""
    column_w: float = 18


CHART_H = 120
STATE_ORDER = (
    State.SUCCESS,
    State.WARNING,
    State.RUNNING,
    State.QUEUED,
    State.CREATED,
    State.KILLING,
    State.KILLED,
    State.SKIPPED,
    State.RESTARTED,
    State.FAILED,
)


def per_hour(created: Sequence[tuple[float, State]], now: float, hours: int = 24) -> Chart:
    """Executions created in each of the last ``hours`` hours, stacked by state."""
    first = (int(now // 3600) - hours + 1) * 3600
    counts: list[dict[State, int]] = [{} for _ in range(hours)]
    for at, state in created:
        slot = int((at - first) // 3600)
        if 0 <= slot < hours:
            counts[slot][state] = counts[slot].get(state, 0) + 1
    top = max((sum(c.values()) for c in counts), default=0) or 1
    columns = []
    for i, c in enumerate(counts):
        y = float(CHART_H)
        parts = []
        for state in STATE_ORDER:
            n = c.get(state, 0)
            if n:
                h = n / top * CHART_H
                y -= h
                parts.append(Bar(y, h, state.value, f"{n} {state.value.lower()}"))
        hour = time.strftime("%H:00", time.localtime(first + i * 3600))
        columns.append(Column(i * 34.0, hour, parts, sum(c.values())))
    return Chart(columns, hours * 34.0, CHART_H, top, column_w=28)


def durations(outcomes: Sequence[tuple[int, State, float | None, float | None]]) -> Chart:
    """One column per execution (oldest left): its duration, coloured by its state.
    ``outcomes`` are (id, state, started_at, ended_at), newest first."""
    took = [
        (ex_id, state, (ended - started) if started is not None and ended is not None else 0.0)
        for ex_id, state, started, ended in reversed(outcomes)
    ]
    top = max((t for _, _, t in took), default=0.0) or 1.0
    columns = []
    for i, (ex_id, state, t) in enumerate(took):
        h = max(2.0, t / top * CHART_H)
        bar = Bar(CHART_H - h, h, state.value, f"#{ex_id} {state.value.lower()} in {seconds(t)}")
        columns.append(Column(i * 14.0, f"#{ex_id}", [bar], ex_id))
    return Chart(columns, max(1, len(columns)) * 14.0, CHART_H, top, "s", 10)


def seconds(value: float) -> str:
    """A duration for people: ``340 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"
