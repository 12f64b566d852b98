"""What a python host is sent of a task's environment: what changed since the last."""

from __future__ import annotations

from ordo.runners.python import TaskEnv


def _apply(env: dict[str, str], change: tuple[dict[str, str], list[str]]) -> dict[str, str]:
    changed, unset = change
    return {**{k: v for k, v in env.items() if k not in unset}, **changed}


def test_tasks_inheriting_alike_are_sent_only_their_own_differences() -> None:
    base = {"PATH": "/bin", "HOME": "/root", "LANG": "C"}
    first = TaskEnv(base, {"ORDO_ATTEMPT": "1", "LANG": "fr", "EXTRA": "x"})
    second = TaskEnv(base, {"ORDO_ATTEMPT": "2", "HOME": "/home/a"})
    change = second.since(first)
    # LANG goes back to what is inherited, EXTRA goes, HOME and ORDO_ATTEMPT change
    assert change == ({"ORDO_ATTEMPT": "2", "HOME": "/home/a", "LANG": "C"}, ["EXTRA"])
    assert _apply(first.whole(), change) == second.whole()
    assert second.since(second) == ({}, [])


def test_another_base_is_compared_whole() -> None:
    first = TaskEnv({"PATH": "/bin", "HOME": "/root"}, {"A": "1"})
    second = TaskEnv({"PATH": "/bin"}, {"A": "2", "B": "3"})
    change = second.since(first)
    assert change == ({"A": "2", "B": "3"}, ["HOME"])
    assert _apply(first.whole(), change) == second.whole()
