"""States, the transition table, durations."""

from __future__ import annotations

import pytest

from ordo.errors import IllegalTransition
from ordo.model import TERMINAL, TRANSITIONS, State, check_transition, parse_duration


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("CREATED", "RUNNING"),
        ("CREATED", "QUEUED"),
        ("CREATED", "SKIPPED"),
        ("QUEUED", "RUNNING"),
        ("QUEUED", "KILLED"),
        ("RUNNING", "SUCCESS"),
        ("RUNNING", "WARNING"),
        ("RUNNING", "FAILED"),
        ("RUNNING", "KILLING"),
        ("KILLING", "KILLED"),
        ("FAILED", "RESTARTED"),
        ("KILLED", "RESTARTED"),
        ("WARNING", "RESTARTED"),
        ("RESTARTED", "RUNNING"),
        # added by issues 4 and 5: run_if answers after a claim; restart of task runs
        ("RUNNING", "SKIPPED"),
        ("SUCCESS", "RESTARTED"),
        ("SKIPPED", "RESTARTED"),
        ("RESTARTED", "SKIPPED"),
        ("RESTARTED", "KILLED"),
    ],
)
def test_design_transitions_are_legal(old: str, new: str) -> None:
    check_transition(State(old), State(new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("SUCCESS", "RUNNING"),
        ("SUCCESS", "FAILED"),
        ("SKIPPED", "RUNNING"),
        ("RUNNING", "CREATED"),
        ("RUNNING", "KILLED"),
        ("FAILED", "RUNNING"),
        ("CREATED", "SUCCESS"),
        ("KILLING", "RUNNING"),
        ("QUEUED", "SUCCESS"),
    ],
)
def test_illegal_transitions_are_rejected(old: str, new: str) -> None:
    with pytest.raises(IllegalTransition, match=f"illegal transition {old} -> {new}"):
        check_transition(State(old), State(new), "execution 1")


def test_terminal_states_have_no_way_out_but_restart() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] <= {State.RESTARTED}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        (3, 3.0),
        ("1.5", 1.5),
        (0.25, 0.25),
        ("2d", 172800.0),
    ],
)
def test_durations_accept_units_and_numbers(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "1x", True, -2, "", None])
def test_bad_durations_name_the_accepted_forms(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 500ms, 2s, 1m, 1h"):
        parse_duration(bad)
