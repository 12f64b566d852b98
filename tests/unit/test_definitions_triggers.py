"""``triggers:``, ``notify:``, ``active:`` and ``allow_manual:`` in flow files."""

from __future__ import annotations

import textwrap

import pytest

from ordo.definitions import parse_flow
from ordo.errors import DefinitionError
from ordo.model import Flow, NotifyRule, Trigger

TASKS = "tasks:\n  - {id: a, type: shell, command: 'true'}\n"


def flow(text: str) -> Flow:
    return parse_flow(textwrap.dedent(text).lstrip() + TASKS, "flow.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        flow(text)
    return [str(p) for p in caught.value.problems]


def test_triggers_notify_and_flags_parse_and_round_trip() -> None:
    parsed = flow(
        """
        id: f
        active: false
        allow_manual: false
        triggers:
          - {type: schedule, cron: "20 * * * *", timezone: Europe/Vienna, catchup: all,
             max_catchup: 3}
          - {type: schedule, id: weekly, cron: "0 9 * * 0", dialect: monday0}
          - {type: event, event: file.arrived, filter: "{{ event.data.size > 0 }}"}
          - {type: webhook, key: a-long-secret, inputs: {x: 1}}
        notify:
          - {on: [failed, warning], email: [ops@example.com]}
          - {on: failed, webhook: "https://hooks.example.com/x"}
        """
    )
    assert not parsed.active and not parsed.allow_manual
    assert parsed.triggers[0] == Trigger(
        "schedule1",
        "schedule",
        cron="20 * * * *",
        timezone="Europe/Vienna",
        catchup="all",
        max_catchup=3,
    )
    assert [t.id for t in parsed.triggers] == ["schedule1", "weekly", "event3", "webhook4"]
    assert parsed.triggers[3].inputs == {"x": 1}
    assert parsed.notify == (
        NotifyRule(on=("failed", "warning"), email=("ops@example.com",)),
        NotifyRule(on=("failed",), webhook="https://hooks.example.com/x"),
    )
    assert Flow.from_dict(parsed.to_dict()) == parsed


def test_every_problem_of_triggers_and_notify_is_named_with_line_and_field() -> None:
    found = problems(
        """
        id: f
        triggers:
          - {type: schedule, cron: "* * 32 * *", timezone: Nowhere/City, catchup: some}
          - {type: cron, cron: "* * * * *"}
          - {type: webhook, key: short}
          - {type: event}
          - {type: schedule, id: dup, cron: "@daily"}
          - {type: schedule, id: dup, cron: "@daily", colour: red}
        notify:
          - {on: [exploded], email: not-an-address}
          - {on: [failed]}
        """
    )
    text = "\n".join(found)
    assert "flow.yaml:3:" in text
    assert "triggers[0].cron: '* * 32 * *': day-of-month 32 is out of range 1-31" in text
    assert "triggers[0].timezone: 'Nowhere/City' is not a known time zone" in text
    assert "triggers[0].catchup: catchup must be one of none, last, all" in text
    assert "triggers[1].type: unknown type 'cron'" in text
    assert "triggers[2].key: a webhook key is a secret of at least 8 characters" in text
    assert "triggers[3]: missing required key 'event'" in text
    assert "trigger id 'dup' is used twice" in text
    assert "unknown key 'colour'" in text
    assert "notify[0].on: unknown state 'exploded'" in text
    assert "notify[0].email: expected an address or a list of addresses" in text
    assert "notify[1]: give email or webhook (or both)" in text
