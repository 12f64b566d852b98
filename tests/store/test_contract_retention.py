"""The store contract for saved executions and ``ordo gc``, on every backend: exactly the
right execution trees go, with every row of theirs, in batches; saved ones, recent ones
and trees with a running or saved execution stay."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from ordo.engine import open_store
from ordo.errors import Conflict, NotFound
from ordo.model import CheckResult, Flow, Metric, Outcome, State, Task
from ordo.store import Store
from ordo.store.records import NewLog, Swept
from ordo.store.retention import GC_TABLES, NOT_EXECUTION_TABLES

DAY = 86_400.0
NOW = 1_800_000_000.0
RNG = random.Random(3)
#: Every table holding rows of executions (written out here, not taken from GC_TABLES,
#: so that a table gc forgets shows as rows left behind).
TABLES = [
    "task_run_deps",
    "ready",
    "outputs",
    "metrics",
    "logs",
    "state_history",
    "checks",
    "trigger_ticks",
    "notifications",
    "steps",
    "attempts",
    "task_runs",
    "executions",
]


def task(tid: str, *deps: str) -> Task:
    return Task(id=tid, type="shell", spec={"command": "true"}, depends_on=deps)


FLOW = Flow(id="f", tasks=(task("a"), task("b", "a")), base_dir="/tmp")


def revision(store: Store) -> int:
    found = store.find_revision("hash-f", None)
    return found.id if found else store.add_revision(FLOW, "source", "hash-f", NOW - 99 * DAY).id


def started(store: Store, at: float, *, dev: bool = False, parent: int | None = None) -> int:
    return store.create_execution(revision(store), {"x": 1}, {}, at, parent_id=parent, dev=dev)


def run_tree(store: Store, root: int, ends: dict[int, float]) -> None:
    """Run the task runs of these executions of ``root``'s tree to SUCCESS, each
    execution ending at its time, with a log line, an output, a metric and a check result
    per attempt:
    rows in every table keyed by execution. The tree's other executions keep running."""
    while True:
        claims = store.claim("w1", 100, max(ends.values()), 30.0, execution_id=root)
        if not claims:
            break
        for claim in claims:
            at = ends.get(claim.execution_id)
            if at is None:
                continue  # left running
            store.add_logs([NewLog(claim.execution_id, claim.attempt_id, at, "stdout", "hi")])
            store.record_step(claim, 1, "now", "now", at, value="2026-12-05T10:00:00+00:00")
            outcome = Outcome(
                State.SUCCESS,
                exit_code=0,
                outputs={"n": 1},
                metrics=(Metric("rows", 2),),
                checks=(CheckResult("post", 1, "file_exists", True, "found", at, at),),
            )
            store.record_outcomes([(claim, outcome)], at, RNG)
    for ex_id, at in ends.items():
        execution = store.get_execution(ex_id)
        assert (execution.state, execution.ended_at) == (State.SUCCESS, at)


def ended(store: Store, at: float, *, dev: bool = False) -> int:
    """An execution that ended at ``at``, started by a schedule tick and notified of."""
    ex_id = started(store, at - 10, dev=dev)
    run_tree(store, ex_id, {ex_id: at})
    with store.transaction():
        store.add_tick("default", "f", "schedule1", float(ex_id), ex_id, at - 10)
    store.add_notification(store.get_execution(ex_id), "webhook:http://x", None, at)
    return ex_id


def rows_of(store: Store, ids: list[int]) -> dict[str, int]:
    """How many rows of these executions each table holds."""
    marks = ", ".join("?" * len(ids))
    found = {}
    for table in TABLES:
        if table == "task_run_deps":
            sql = (
                "SELECT count(*) FROM task_run_deps d JOIN task_runs t ON t.id = d.task_run_id "
                f"WHERE t.execution_id IN ({marks})"
            )
        elif table == "executions":
            sql = f"SELECT count(*) FROM executions WHERE id IN ({marks})"
        else:
            sql = f"SELECT count(*) FROM {table} WHERE execution_id IN ({marks})"
        found[table] = store.db.one(sql, ids)[0]
    return found


def totals(store: Store) -> dict[str, int]:
    return {t: store.db.one(f"SELECT count(*) FROM {t}")[0] for t in TABLES}


def gc(store: Store, keep_days: float = 30, dev_days: float = 3, **kw: object) -> list[Swept]:
    return list(store.collect_garbage(NOW - keep_days * DAY, NOW - dev_days * DAY, **kw))  # type: ignore[arg-type]


def summed(batches: list[Swept]) -> dict[str, int]:
    result = {"executions": sum(b.executions for b in batches)}
    for b in batches:
        for table, n in b.rows.items():
            result[table] = result.get(table, 0) + n
    return result


def stale_ready_row(store: Store, ex_id: int) -> None:
    """A ready row left behind for an ended execution (as a crash of an old version
    could): gc must take it too."""
    tr_id = store.task_runs(ex_id)[0].id
    store.db.execute(
        "INSERT INTO ready (task_run_id, execution_id, not_before, queue) VALUES (?, ?, ?, ?)",
        (tr_id, ex_id, NOW, "default"),
    )


def test_gc_deletes_old_ended_executions_with_every_row_and_keeps_the_rest(
    store: Store,
) -> None:
    old = [ended(store, NOW - 40 * DAY), ended(store, NOW - 31 * DAY)]
    stale_ready_row(store, old[0])
    recent = ended(store, NOW - 29 * DAY)
    running = started(store, NOW - 50 * DAY)
    saved = ended(store, NOW - 60 * DAY)
    store.save_execution(saved, "keep-me", None, NOW)
    kept = [recent, running, saved]
    before_old, before_kept, before = rows_of(store, old), rows_of(store, kept), totals(store)
    assert all(before_old[t] > 0 for t in TABLES), before_old  # every table has rows of them

    batches = gc(store)

    assert rows_of(store, old) == dict.fromkeys(TABLES, 0)
    assert rows_of(store, kept) == before_kept
    after = totals(store)
    assert summed(batches) == {t: before[t] - after[t] for t in TABLES}
    assert summed(batches)["executions"] == 2
    assert batches[0].oldest == NOW - 40 * DAY and batches[0].newest == NOW - 31 * DAY
    with pytest.raises(NotFound):
        store.get_execution(old[0])
    assert [e.id for e in store.list_executions()] == [saved, running, recent]


def test_gc_dry_run_counts_what_would_go_and_deletes_nothing(store: Store) -> None:
    for days in (40, 35, 10):
        ended(store, NOW - days * DAY)
    before = totals(store)
    dry = gc(store, dry_run=True)
    assert totals(store) == before
    assert summed(dry)["executions"] == 2
    real = gc(store)
    assert summed(real) == summed(dry)
    assert [(b.oldest, b.newest) for b in real] == [(b.oldest, b.newest) for b in dry]


def test_dev_executions_are_kept_dev_days_and_their_children_are_dev(store: Store) -> None:
    dev_old = ended(store, NOW - 5 * DAY, dev=True)
    plain_old = ended(store, NOW - 5 * DAY)
    dev_recent = ended(store, NOW - 1 * DAY, dev=True)
    root = started(store, NOW - 2 * DAY, dev=True)
    child = started(store, NOW - 2 * DAY, parent=root)
    assert store.get_execution(child).dev is True
    assert store.get_execution(plain_old).dev is False

    batches = gc(store, keep_days=30, dev_days=3)

    assert summed(batches)["executions"] == 1 and [b.dev for b in batches] == [True]
    with pytest.raises(NotFound):
        store.get_execution(dev_old)
    remaining = {e.id for e in store.list_executions()}
    assert remaining == {plain_old, dev_recent, root, child}


def test_gc_deletes_a_tree_only_when_its_root_and_every_child_qualify(store: Store) -> None:
    old, later = NOW - 45 * DAY, NOW - 1 * DAY
    # a: an old tree, all ended: goes whole, grandchild too
    a = started(store, NOW - 50 * DAY)
    a_child = started(store, NOW - 50 * DAY, parent=a)
    a_grandchild = started(store, NOW - 50 * DAY, parent=a_child)
    run_tree(store, a, {a: old, a_child: old, a_grandchild: old})
    # b: an old root whose child (not waited for) still runs: stays whole
    b = started(store, NOW - 50 * DAY)
    b_child = started(store, NOW - 50 * DAY, parent=b)
    run_tree(store, b, {b: old})
    # c: an old tree with a saved child: stays whole
    c = started(store, NOW - 50 * DAY)
    c_child = started(store, NOW - 50 * DAY, parent=c)
    run_tree(store, c, {c: old, c_child: old})
    store.save_execution(c_child, "child-kept", "its parent stays with it", NOW)
    # d: a recent root with an old child: the child stays with its parent
    d = started(store, NOW - 50 * DAY)
    d_child = started(store, NOW - 50 * DAY, parent=d)
    run_tree(store, d, {d: later, d_child: old})
    # e: an old root whose child ended after the cutoff: stays whole
    e = started(store, NOW - 50 * DAY)
    e_child = started(store, NOW - 50 * DAY, parent=e)
    run_tree(store, e, {e: old, e_child: later})
    kept = [b, b_child, c, c_child, d, d_child, e, e_child]
    before_kept = rows_of(store, kept)

    batches = gc(store)

    assert summed(batches)["executions"] == 3
    assert rows_of(store, [a, a_child, a_grandchild]) == dict.fromkeys(TABLES, 0)
    assert rows_of(store, kept) == before_kept
    for ex_id in kept:  # every kept child still has its parent
        parent = store.get_execution(ex_id).parent_id
        if parent is not None:
            store.get_execution(parent)


def test_gc_goes_through_more_executions_than_one_batch(store: Store) -> None:
    same_end = NOW - 40 * DAY  # ties on the end time: the cursor is (end, id)
    old = [ended(store, same_end) for _ in range(5)]
    saved = ended(store, same_end)
    store.save_execution(saved, "between", None, NOW)
    running_tree = started(store, NOW - 50 * DAY)
    started(store, NOW - 50 * DAY, parent=running_tree)
    run_tree(store, running_tree, {running_tree: same_end})
    old += [ended(store, same_end + i) for i in range(1, 4)]

    batches = gc(store, batch=2)

    assert summed(batches)["executions"] == 8
    assert len(batches) >= 4 and all(b.executions <= 2 for b in batches)
    assert rows_of(store, old) == dict.fromkeys(TABLES, 0)
    assert {e.id for e in store.list_executions()} == {saved, running_tree, running_tree + 1}
    assert gc(store, batch=2) == []


def test_gc_batch_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        gc(store, batch=0)


def test_every_table_is_either_swept_by_gc_or_holds_no_execution_rows(store: Store) -> None:
    if store.backend == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    tables = {r[0] for r in store.db.all(sql)}
    assert tables == set(TABLES) | set(NOT_EXECUTION_TABLES)
    assert sorted(table for table, _ in GC_TABLES) == sorted(TABLES)


def test_saved_names_are_unique_and_one_per_execution(store: Store) -> None:
    first = ended(store, NOW - 40 * DAY)
    second = ended(store, NOW - 40 * DAY)
    store.save_execution(first, "baseline", "the good one", NOW)
    saved = store.get_execution(first)
    assert (saved.saved_name, saved.saved_description, saved.saved_at) == (
        "baseline",
        "the good one",
        NOW,
    )
    store.save_execution(first, "baseline", "still the good one", NOW + 5)  # same name
    again = store.get_execution(first)
    assert (again.saved_description, again.saved_at) == ("still the good one", NOW)
    store.save_execution(first, "baseline", None, NOW + 6)  # no description: kept
    assert store.get_execution(first).saved_description == "still the good one"
    with pytest.raises(Conflict, match="already saved as 'baseline'"):
        store.save_execution(first, "other", None, NOW)
    with pytest.raises(Conflict, match="'baseline' is taken by execution"):
        store.save_execution(second, "baseline", None, NOW)
    with pytest.raises(NotFound, match="execution 999 not found"):
        store.save_execution(999, "x", None, NOW)
    assert store.find_saved("baseline").id == first
    with pytest.raises(NotFound, match=r"no saved execution named 'nope' \(saved: baseline\)"):
        store.find_saved("nope")

    assert store.unsave_execution(first) == "baseline"
    with pytest.raises(NotFound, match=f"execution {first} is not saved"):
        store.unsave_execution(first)
    with pytest.raises(NotFound, match="no execution is saved"):
        store.find_saved("baseline")
    store.save_execution(second, "baseline", None, NOW)  # the name is free again
    assert store.find_saved("baseline").id == second
    assert summed(gc(store))["executions"] == 1  # the first is no longer saved
    assert [e.id for e in store.list_executions()] == [second]


def test_list_filters_saved_and_dev(store: Store) -> None:
    plain = ended(store, NOW - DAY)
    dev = ended(store, NOW - DAY, dev=True)
    kept = ended(store, NOW - DAY)
    store.save_execution(kept, "kept", None, NOW)
    assert [e.id for e in store.list_executions(saved=True)] == [kept]
    assert [e.id for e in store.list_executions(saved=False)] == [dev, plain]
    assert [e.id for e in store.list_executions(dev=True)] == [dev]
    assert [e.id for e in store.list_executions(dev=False)] == [kept, plain]
    assert [e.id for e in store.list_executions(dev=False, saved=False)] == [plain]


def test_reclaiming_space_after_gc(store: Store) -> None:
    ex_ids = [ended(store, NOW - 40 * DAY) for _ in range(3)]
    lines = [NewLog(ex_ids[0], 1, NOW, "stdout", "x" * 500) for _ in range(2000)]
    store.add_logs(lines)
    assert summed(gc(store))["executions"] == 3
    reclaimed = store.reclaim_space()
    if store.backend == "sqlite":
        assert reclaimed.bytes is not None and reclaimed.bytes > 500 * 1000
        assert reclaimed.how == "incremental vacuum"
    else:
        assert reclaimed.bytes is None and "autovacuum" in reclaimed.how


def test_a_new_sqlite_file_is_incremental_auto_vacuum(tmp_path: Path) -> None:
    open_store(str(tmp_path / "new.db")).close()
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    conn.close()


def test_an_older_sqlite_file_says_how_to_shrink_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something_older (x)")  # created before ordo set auto_vacuum
    conn.close()
    store = open_store(str(path))
    try:
        reclaimed = store.reclaim_space()
    finally:
        store.close()
    assert reclaimed.bytes is None
    assert "created without auto_vacuum=INCREMENTAL" in reclaimed.how
    assert "PRAGMA auto_vacuum=INCREMENTAL; VACUUM" in reclaimed.how


def test_gc_deletes_events_received_before_the_retention_in_batches(store: Store) -> None:
    for i in range(5):
        store.add_event("old", {"i": i}, NOW - 40 * DAY)
    store.add_event("new", {}, NOW - DAY)
    assert store.collect_events(NOW - 30 * DAY, dry_run=True) == 5
    assert len(store.list_events()) == 6
    assert store.collect_events(NOW - 30 * DAY, batch=2) == 5
    assert [e.type for e in store.list_events()] == ["new"]
