"""Credentials never shown: a connection's secrets replaced by ``***`` in log lines,
errors and outputs of the tasks that use it, and so are the values of a task's
environment variables named like a secret. Pure."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ordo.model import Outcome

MASK = "***"


def mask(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def mask_value(value: Any, secrets: tuple[str, ...]) -> Any:
    """Every string inside ``value`` (nested dicts and lists too), masked."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: mask_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, secrets) for v in value]
    return value


def masked(outcome: Outcome, secrets: tuple[str, ...]) -> Outcome:
    """The outcome with ``secrets`` masked in its error, outputs and check results."""
    if not secrets:
        return outcome
    return dataclasses.replace(
        outcome,
        error=mask(outcome.error, secrets) if outcome.error else outcome.error,
        outputs=mask_value(dict(outcome.outputs), secrets),
        checks=tuple(
            dataclasses.replace(
                c,
                message=mask(c.message, secrets),
                output=mask(c.output, secrets) if c.output else c.output,
            )
            for c in outcome.checks
        ),
    )


#: Variable names whose values are secrets: masked in logs, outputs and errors.
SECRET_NAME = re.compile(r"password|passwd|secret|key|token", re.IGNORECASE)


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the variables in ``env`` named like a secret (password, secret,
    key, token), longest first; values under 4 characters are left alone (masking
    ``1`` everywhere would hide more than it protects)."""
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= 4}
    return tuple(sorted(found, key=lambda v: (-len(v), v)))
