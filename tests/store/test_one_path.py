"""Every change of state goes through one function (``ordo.store.transitions``): no
other SQL of the store writes an execution's or a task run's state, or state history;
rows are created CREATED; and an illegal change is an error naming the run, the states
and the caller, with nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_contract import NOW, RNG, claim_all, flow_of, ok, start, states, task

from ordo.errors import IllegalTransition
from ordo.model import By, State
from ordo.store import Store
from ordo.store.transitions import Change

STORE = Path(__file__).resolve().parents[2] / "src" / "ordo" / "store"

#: ``UPDATE executions|task_runs ... SET ... state =`` up to the statement's WHERE/FROM
_SETS_STATE = re.compile(
    r"UPDATE\s+(executions|task_runs)\s+SET\s+(?:(?!\bWHERE\b|\bFROM\b).)*?(?<![\w.])state\s*=",
    re.IGNORECASE | re.DOTALL,
)
_WRITES_HISTORY = re.compile(r"INSERT\s+INTO\s+state_history", re.IGNORECASE)
_INSERTS_RUN = re.compile(
    r"INSERT\s+INTO\s+(executions|task_runs)\b.*?(?:VALUES|SELECT)(.*?)(?:\"\"\"|$)",
    re.IGNORECASE | re.DOTALL,
)


def _sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(STORE.glob("*.py"))}


def test_only_the_transitions_module_writes_a_state_or_its_history() -> None:
    found = []
    for name, text in _sources().items():
        if name == "transitions.py":
            continue
        for pattern in (_SETS_STATE, _WRITES_HISTORY):
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{name}:{line}: {match.group(0)[:60]!r}")
    assert found == []
    # the scan does find them where they are
    text = (STORE / "transitions.py").read_text()
    assert len(_SETS_STATE.findall(text)) >= 3
    assert _WRITES_HISTORY.search(text)


def test_no_other_module_notes_history_by_hand() -> None:
    offenders = [
        name
        for name, text in _sources().items()
        if name != "transitions.py" and "_transitions" in text
    ]
    assert offenders == []


def test_rows_are_created_created() -> None:
    for name, text in _sources().items():
        for match in _INSERTS_RUN.finditer(text):
            states = set(re.findall(r"'([A-Z]+)'", match.group(2)))
            assert states <= {"CREATED"}, f"{name}: {match.group(0)[:80]!r}"


def test_an_illegal_transition_names_run_states_and_caller_and_writes_nothing(
    store: Store,
) -> None:
    ex_id = start(store, flow_of(task("a"), task("b", "a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    before = store.history(ex_id)
    bad = Change(ex_id, a.task_run_id, State.SUCCESS, State.RUNNING)
    with pytest.raises(IllegalTransition) as caught, store.transaction():
        store.transitions.transition([bad], NOW + 2)
    message = str(caught.value)
    assert f"task run {a.task_run_id} of execution {ex_id}" in message
    assert "SUCCESS -> RUNNING" in message
    assert "test_an_illegal_transition_names_run_states_and_caller" in message
    assert store.history(ex_id) == before


def test_a_mark_edge_is_not_a_work_edge(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    store.record_outcomes([(a, ok())], NOW + 1, RNG)
    mark = Change(ex_id, a.task_run_id, State.SUCCESS, State.FAILED, "by hand")
    with pytest.raises(IllegalTransition, match="SUCCESS -> FAILED"), store.transaction():
        store.transitions.transition([mark], NOW + 2)
    with store.transaction():
        assert store.transitions.transition([mark], NOW + 2, By.MARK)
    assert states(store, ex_id) == {"a": "FAILED"}


def test_only_a_routine_move_may_leave_its_history_to_its_attempt(store: Store) -> None:
    ex_id = start(store, flow_of(task("a")))
    (a,) = claim_all(store, ex_id)
    failed = Change(ex_id, a.task_run_id, State.RUNNING, State.FAILED, "exit code 1")
    with pytest.raises(IllegalTransition, match="not a routine move"), store.transaction():
        store.transitions.transition([failed], NOW + 1, routine=True)
    assert states(store, ex_id) == {"a": "RUNNING"}
