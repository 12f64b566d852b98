"""The UI's pictures as data (ordo.ui.drawing): DAG layout, timeline, charts."""

from __future__ import annotations

from ordo.model import State, Task
from ordo.store.records import AttemptRow, TaskRunRow
from ordo.ui import drawing


def task(task_id: str, *deps: str, for_each: object = None) -> Task:
    return Task(id=task_id, type="shell", depends_on=deps, for_each=for_each)


def test_dag_puts_tasks_in_columns_by_wave_and_draws_each_dependency_once() -> None:
    tasks = [task("a"), task("b"), task("c", "a", "b", "a"), task("d", "c", for_each="[1]")]
    drawn = drawing.dag(tasks, {"a": State.SUCCESS, "c": State.RUNNING}, {"c": "2 attempts"})
    at = {n.id: n for n in drawn.nodes}
    assert at["a"].x == at["b"].x < at["c"].x < at["d"].x
    assert at["a"].y < at["b"].y
    assert (at["a"].state, at["b"].state, at["c"].state) == ("SUCCESS", "NONE", "RUNNING")
    assert at["c"].detail == "2 attempts" and at["d"].detail == "for_each"
    assert sorted((e.source, e.target) for e in drawn.edges) == [
        ("a", "c"),
        ("b", "c"),
        ("c", "d"),
    ]
    assert drawn.width > at["d"].x and drawn.height > at["b"].y


def test_dag_orders_a_column_by_where_its_dependencies_are() -> None:
    tasks = [task("top"), task("bottom"), task("after-bottom", "bottom"), task("after-top", "top")]
    at = {n.id: n for n in drawing.dag(tasks).nodes}
    assert at["after-top"].y < at["after-bottom"].y


def test_a_graph_that_is_not_a_dag_is_drawn_as_one_column() -> None:
    drawn = drawing.dag([task("a", "b"), task("b", "a")])
    assert {n.x for n in drawn.nodes} == {drawing.PAD}


def test_the_svg_escapes_names_and_shortens_long_ones() -> None:
    svg = drawing.dag_svg(drawing.dag([task("<b>" + "x" * 40)]), 'a "label"')
    assert "&lt;b&gt;" in svg and "<b>" not in svg.replace("<b>x", "")
    assert "…" in svg and 'aria-label="a &#34;label&#34;"' in svg


def run(run_id: int, task_id: str) -> TaskRunRow:
    return TaskRunRow(run_id, 1, task_id, State.SUCCESS, 0, False, 1, None, None, 0.0, None, None)


def attempt(attempt_id: int, run_id: int, start: float, end: float | None) -> AttemptRow:
    state = State.SUCCESS if end else State.RUNNING
    return AttemptRow(
        attempt_id, run_id, 1, attempt_id, state, None, None, start, end, 0, None, None, None, None
    )


def test_timeline_has_a_lane_per_task_run_and_a_bar_per_attempt() -> None:
    runs = [run(1, "a"), run(2, "b")]
    attempts = [
        attempt(1, 1, 100.0, 101.0),
        attempt(2, 1, 101.0, 102.0),
        attempt(3, 2, 102.0, None),
    ]
    drawn = drawing.timeline(runs, attempts, now=104.0)
    assert [len(lane.bars) for lane in drawn.lanes] == [2, 1]
    first, second = drawn.lanes[0].bars
    assert (first.x, first.width) == (0.0, 25.0) and second.x == 25.0  # percent of the track
    running = drawn.lanes[1].bars[0]
    assert running.state == "RUNNING" and "2.0 s" in running.title  # up to now
    assert round(running.x + running.width) == 100
    assert [t.x for t in drawn.ticks] == [0, 25, 50, 75, 100]
    assert drawn.ticks[-1].label == "+4.0 s"


def test_per_hour_stacks_the_last_day_by_state() -> None:
    now = 1_000 * 3600.0 + 1800  # half past an hour
    created = [
        (now, State.SUCCESS),
        (now - 60, State.FAILED),
        (now - 3600, State.SUCCESS),
        (now - 30 * 3600, State.SUCCESS),  # too old
    ]
    chart = drawing.per_hour(created, now)
    assert len(chart.columns) == 24 and chart.top == 2
    last = chart.columns[-1]
    assert last.total == 2 and [p.state for p in last.parts] == ["SUCCESS", "FAILED"]
    assert chart.columns[-2].total == 1 and sum(c.total for c in chart.columns) == 3


def test_durations_show_oldest_first_and_scale_to_the_longest() -> None:
    chart = drawing.durations([(3, State.FAILED, 10.0, 12.0), (2, State.SUCCESS, 0.0, 4.0)])
    assert [c.label for c in chart.columns] == ["#2", "#3"]
    assert chart.top == 4.0 and chart.columns[0].parts[0].width == drawing.CHART_H


def test_seconds_reads_like_people_write_durations() -> None:
    assert [drawing.seconds(v) for v in (0.34, 4.25, 185, 7800)] == [
        "340 ms",
        "4.2 s",
        "3 min 5 s",
        "2 h 10 min",
    ]


def test_a_for_each_node_counts_its_items_by_state() -> None:
    def items(*states: State) -> list[TaskRunRow]:
        return [
            TaskRunRow(i, 1, "work", s, 0, False, 1, None, None, 0.0, None, None, 9, i)
            for i, s in enumerate(states)
        ]

    failed, skipped, ok = State.FAILED, State.SKIPPED, State.SUCCESS
    assert drawing.items_detail(items(failed, failed, skipped, skipped)) == (
        "2 failed, 2 skipped of 4"
    )
    assert drawing.items_detail(items(ok, ok, ok)) == "3 succeeded of 3"
    assert drawing.items_detail(items(ok, State.RUNNING, State.CREATED, State.QUEUED)) == (
        "1 succeeded, 1 running, 2 waiting of 4"
    )
