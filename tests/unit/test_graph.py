"""The task graph: cycles, waves, order."""

from __future__ import annotations

import pytest

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


def test_unknown_dependency_names_both_tasks_and_a_close_match() -> None:
    (problem,) = check_graph([t("transform"), t("load", "transfrom")], "f.yaml")
    assert problem.message == (
        "task 'load' depends on unknown task 'transfrom' (did you mean 'transform'?)"
    )
    assert (problem.path, problem.line, problem.field) == ("f.yaml", 1, "tasks[1].depends_on")


def test_cycle_is_found_even_next_to_other_problems() -> None:
    found = check_graph([t("a", "b"), t("b", "a"), t("b"), t("c", "zzz")])
    assert [p.message for p in found] == [
        "duplicate task id 'b' (first defined at line 1)",
        "task 'c' depends on unknown task 'zzz'",
        "dependency cycle: a -> b -> a",
    ]
    assert found[2].field == "tasks[0].depends_on"


def test_waves_refuse_a_graph_that_cannot_be_ordered() -> None:
    with pytest.raises(ValueError, match="not a DAG: cannot order a, b"):
        waves([t("a", "b"), t("b", "a"), t("c")])


def test_dependency_listed_twice_does_not_repeat_a_task() -> None:
    assert waves([t("a"), t("b", "a", "a"), t("c", "b")]) == [["a"], ["b"], ["c"]]
