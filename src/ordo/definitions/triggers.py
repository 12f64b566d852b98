"""``triggers:`` and ``notify:`` of a flow file: what starts a flow without a person
(cron schedules, events, webhooks) and whom to tell when an execution ends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ordo import cron
from ordo.definitions.document import DocumentChecker, template_problems
from ordo.model import NotifyRule, Trigger

TRIGGER_TYPES = ("schedule", "event", "webhook")
TRIGGER_KEYS: Mapping[str, tuple[str, ...]] = {
    "schedule": ("id", "type", "cron", "timezone", "dialect", "catchup", "max_catchup", "inputs"),
    "event": ("id", "type", "event", "filter", "inputs"),
    "webhook": ("id", "type", "key", "inputs"),
}
NOTIFY_KEYS = ("on", "email", "webhook")
NOTIFY_STATES = ("success", "warning", "failed", "killed")
MIN_WEBHOOK_KEY = 8


def read_triggers(checker: DocumentChecker, root: Mapping[str, Any]) -> tuple[Trigger, ...]:
    """The flow's triggers, every problem recorded on ``checker``."""
    node = root["triggers"] if checker.get(root, "triggers", "list", "") else []
    found: list[Trigger] = []
    seen: set[str] = set()
    for i, item in enumerate(node or []):
        field = f"triggers[{i}]"
        trigger = _trigger(checker, node, i, item, field)
        if trigger is None:
            continue
        if trigger.id in seen:
            checker.problem(f"trigger id {trigger.id!r} is used twice", f"{field}.id", item, "id")
        seen.add(trigger.id)
        found.append(trigger)
    return tuple(found)


def _trigger(
    checker: DocumentChecker, seq: list[Any], i: int, item: Any, field: str
) -> Trigger | None:
    if not isinstance(item, Mapping):
        checker.expect("a mapping with a type", field, item, seq, i)
        return None
    kind = item.get("type")
    if kind not in TRIGGER_TYPES:
        what = "missing required key 'type'" if kind is None else f"unknown type {kind!r}"
        checker.problem(
            f"{what}; a trigger is one of {', '.join(TRIGGER_TYPES)}",
            f"{field}.type",
            item,
            "type" if kind is not None else None,
        )
        return None
    checker.keys(item, TRIGGER_KEYS[kind], field)
    trigger_id = checker.identifier(item, "id", f"{field}.id") or f"{kind}{i + 1}"
    inputs = checker.get(item, "inputs", "map", field) or {}
    if kind == "schedule":
        return _schedule(checker, item, field, trigger_id, inputs)
    if kind == "event":
        event = _required_str(checker, item, "event", field)
        condition = checker.get(item, "filter", "str", field)
        if condition is not None:
            for message in template_problems(condition):
                checker.problem(message, f"{field}.filter", item, "filter")
        return Trigger(trigger_id, kind, event=event, filter=condition, inputs=inputs)
    key = _required_str(checker, item, "key", field)
    if key and (len(key) < MIN_WEBHOOK_KEY or "/" in key):
        checker.problem(
            f"a webhook key is a secret of at least {MIN_WEBHOOK_KEY} characters without '/'",
            f"{field}.key",
            item,
            "key",
        )
    return Trigger(trigger_id, kind, key=key, inputs=inputs)


def _schedule(
    checker: DocumentChecker,
    item: Mapping[str, Any],
    field: str,
    trigger_id: str,
    inputs: Mapping[str, Any],
) -> Trigger:
    expression = _required_str(checker, item, "cron", field)
    timezone = item.get("timezone", "UTC")
    dialect = item.get("dialect", "standard")
    for key, message in cron.schedule_problems(expression or "* * * * *", timezone, dialect):
        if key != "cron" or expression:
            checker.problem(message, f"{field}.{key}", item, key if key in item else None)
    catchup = item.get("catchup", "none")
    if catchup not in cron.CATCHUP:
        checker.problem(
            f"catchup must be one of {', '.join(cron.CATCHUP)}, found {catchup!r}",
            f"{field}.catchup",
            item,
            "catchup",
        )
    max_catchup = checker.get(item, "max_catchup", "positive_int", field, 10)
    return Trigger(
        trigger_id,
        "schedule",
        cron=expression,
        timezone=str(timezone),
        dialect=str(dialect),
        catchup=str(catchup),
        max_catchup=max_catchup,
        inputs=inputs,
    )


def _required_str(checker: DocumentChecker, item: Mapping[str, Any], key: str, field: str) -> str:
    if key not in item:
        checker.problem(f"missing required key '{key}'", field, item, None)
        return ""
    value = checker.get(item, key, "str", field, "")
    if value is not None and not str(value).strip():
        checker.problem(f"{key} must not be empty", f"{field}.{key}", item, key)
    return str(value or "")


def read_notify(checker: DocumentChecker, root: Mapping[str, Any]) -> tuple[NotifyRule, ...]:
    """The flow's notification rules, every problem recorded on ``checker``."""
    node = root["notify"] if checker.get(root, "notify", "list", "") else []
    rules: list[NotifyRule] = []
    for i, item in enumerate(node or []):
        field = f"notify[{i}]"
        if not isinstance(item, Mapping):
            checker.expect("a mapping with on and email or webhook", field, item, node, i)
            continue
        checker.keys(item, NOTIFY_KEYS, field)
        on = _states(checker, item, field)
        email = item.get("email", [])
        email = [email] if isinstance(email, str) else email
        if not isinstance(email, list) or not all(isinstance(a, str) and "@" in a for a in email):
            checker.expect(
                "an address or a list of addresses", f"{field}.email", email, item, "email"
            )
            email = []
        webhook = checker.get(item, "webhook", "str", field)
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            checker.problem(
                f"webhook must be an http(s) URL, found {webhook!r}",
                f"{field}.webhook",
                item,
                "webhook",
            )
        if not email and webhook is None:
            checker.problem("give email or webhook (or both)", field, item, None)
        rules.append(NotifyRule(on=on, email=tuple(email), webhook=webhook))
    return tuple(rules)


def _states(checker: DocumentChecker, item: Mapping[str, Any], field: str) -> tuple[str, ...]:
    on = item.get("on", ["failed"])
    on = [on] if isinstance(on, str) else on
    if not isinstance(on, list) or not on:
        checker.expect("a state or a list of states", f"{field}.on", on, item, "on")
        return ()
    good: list[str] = []
    for state in on:
        name = str(state).lower()
        if name not in NOTIFY_STATES:
            checker.problem(
                f"unknown state {state!r}; on takes {', '.join(NOTIFY_STATES)}",
                f"{field}.on",
                item,
                "on",
            )
        else:
            good.append(name)
    return tuple(good)
