"""The task graph: cycles, waves, order."""

from __future__ import annotations

from ordo.graph import check_graph, find_cycle, topological_order, waves
from ordo.model import Task


def t(tid: str, *deps: str) -> Task:
    return Task(id=tid, type="shell", depends_on=deps, line=1)


def test_waves_group_tasks_by_earliest_start() -> None:
    tasks = [t("a"), t("b", "a"), t("c"), t("d", "b", "c")]
    assert waves(tasks) == [["a", "c"], ["b"], ["d"]]
    assert topological_order(tasks) == ["a", "c", "b", "d"]


def test_long_chains_do_not_recurse() -> None:
    tasks = [t(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in range(10_000)]
    assert len(waves(tasks)) == 10_000
    assert find_cycle(tasks) is None


def test_cycle_path_is_closed() -> None:
    assert find_cycle([t("a", "b"), t("b", "c"), t("c", "a")]) == ["a", "b", "c", "a"]
    (problem,) = check_graph([t("a", "b"), t("b", "a")], "f.yaml")
    assert problem.message == "dependency cycle: a -> b -> a"


def test_self_dependency_is_reported() -> None:
    (problem,) = check_graph([t("a", "a")])
    assert problem.message == "task 'a' depends on itself"
