""" "Run with options": the retry, timeout and notification targets of one execution,
checked where they arrive (``ordo run`` flags, the API's body, the web UI's run form)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ordo.errors import UsageError
from ordo.model import RUN_RETRY_KEYS, RunOptions

_RETRY_KINDS = {"attempts": "positive_int", "delay": "duration", "backoff": "positive_number"}


def read_run_options(
    retry: Mapping[str, Any] | None = None,
    timeout: Any = None,
    notify: Any = None,
) -> RunOptions:
    """The options, checked: ``retry`` a mapping of ``attempts`` (at least 1), ``delay``
    (a duration) and ``backoff`` (a factor); ``timeout`` a duration (``90s``, ``10m``,
    seconds); ``notify`` a list of rules as in a flow file (``{on, email, webhook}``).
    UsageError names every wrong field."""
    if retry is None and (timeout is None or timeout == "") and not notify:
        return RunOptions()  # a plain run: nothing to check (nor the checkers to import)
    from ordo.definitions.document import DocumentChecker
    from ordo.definitions.triggers import read_notify

    checker = DocumentChecker("options")
    given: dict[str, Any] = {}
    if retry is not None:
        if not isinstance(retry, Mapping):
            checker.expect("a mapping of attempts, delay, backoff", "retry", retry, None, None)
        else:
            checker.keys(retry, RUN_RETRY_KEYS, "retry")
            for key, kind in _RETRY_KINDS.items():
                value = checker.get(retry, key, kind, "retry")
                if value is not None:
                    given[key] = value
    seconds = None
    if timeout is not None and timeout != "":
        seconds = checker.get({"timeout": timeout}, "timeout", "duration", "")
        if seconds is not None and seconds <= 0:
            checker.problem(f"must be more than 0, found {timeout!r}", "timeout")
            seconds = None
    rules = read_notify(checker, {"notify": notify}) if notify else ()
    if checker.problems:
        raise UsageError(
            "run options: " + "; ".join(f"{p.field}: {p.message}" for p in checker.problems)
        )
    return RunOptions(retry=given, timeout=seconds, notify=rules)


def notify_rule(text: str) -> dict[str, Any]:
    """``--notify [STATES:]TARGET``: an e-mail address or an http(s) URL, told when the
    execution ends in one of ``STATES`` (comma-separated; default ``failed``)."""
    from ordo.definitions.triggers import NOTIFY_STATES

    states, sep, rest = text.partition(":")
    names = [s.strip().lower() for s in states.split(",")]
    if sep and rest and not rest.startswith("//") and all(n in NOTIFY_STATES for n in names):
        on, target = names, rest.strip()
    else:
        on, target = ["failed"], text.strip()
    if target.startswith(("http://", "https://")):
        return {"on": on, "webhook": target}
    if "@" in target:
        return {"on": on, "email": [a.strip() for a in target.split(",")]}
    raise UsageError(
        f"--notify {text!r}: expected [STATES:]TARGET, TARGET an e-mail address or an "
        f"http(s) URL, STATES among {', '.join(NOTIFY_STATES)} (like failed,killed:ops@example.com)"
    )
