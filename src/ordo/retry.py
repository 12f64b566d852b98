"""When a failed attempt is tried again. Pure: time and randomness are passed in."""

from __future__ import annotations

import random

from msgspec import Struct

from ordo.model import RetryPolicy


class RetryDecision(Struct, frozen=True):
    """``retry`` true: start attempt ``number + 1`` no earlier than ``delay`` seconds from
    now. Otherwise ``why_not`` says which rule stopped it."""

    retry: bool
    delay: float = 0.0
    why_not: str = ""


def backoff_delay(policy: RetryPolicy, failed_attempts: int, rng: random.Random) -> float:
    """Delay before the next attempt after ``failed_attempts`` failures (>= 1).

    ``delay * backoff ** (failed_attempts - 1)``, capped by ``max_delay``, then spread by
    ``± jitter`` (a fraction of the delay), never negative.
    """
    base = policy.delay * (policy.backoff ** (failed_attempts - 1))
    if policy.max_delay is not None:
        base = min(base, policy.max_delay)
    if policy.jitter:
        base += base * policy.jitter * rng.uniform(-1.0, 1.0)
    return max(0.0, base)


NEVER_RETRIED = ("killed", "template", "marked", "pre_check", "connection", "for_each", "import")


def decide(
    policy: RetryPolicy,
    *,
    attempt_number: int,
    reason: str | None,
    exit_code: int | None,
    elapsed: float,
    rng: random.Random,
) -> RetryDecision:
    """Whether attempt ``attempt_number`` (1-based), which just failed, gets another try.

    ``elapsed`` is seconds since the task run's first attempt started; the ``budget``
    counts it plus the coming delay. ``on_exit_codes`` limits only failures by exit
    code: timeouts follow ``on_timeout``, failed post checks ``on_post_check``, and other
    failures (an error, a lost worker) are retried. The reasons in
    :data:`NEVER_RETRIED` never retry: a kill or a mark was asked for; a template
    error, an unknown connection, a for_each over something not a list or a python
    module or function that cannot be imported fails the same way every time; a failed
    pre check means the task must not run.
    """
    if reason in NEVER_RETRIED:
        return RetryDecision(False, why_not=f"{reason} attempts are not retried")
    if attempt_number >= policy.attempts:
        return RetryDecision(False, why_not=f"no attempts left ({policy.attempts} allowed)")
    if reason == "timeout" and not policy.on_timeout:
        return RetryDecision(False, why_not="timeouts are not retried (on_timeout: false)")
    if reason == "post_check" and not policy.on_post_check:
        return RetryDecision(
            False, why_not="failed post checks are not retried (on_post_check: false)"
        )
    if reason == "exit_code" and not policy.on_exit:
        return RetryDecision(False, why_not="failures by exit code are not retried")
    if (
        policy.on_exit_codes
        and reason == "exit_code"
        and (exit_code is None or exit_code not in policy.on_exit_codes)
    ):
        codes = ", ".join(str(c) for c in policy.on_exit_codes)
        return RetryDecision(
            False, why_not=f"exit code {exit_code} is not in on_exit_codes [{codes}]"
        )
    delay = backoff_delay(policy, attempt_number, rng)
    if policy.budget is not None and elapsed + delay > policy.budget:
        return RetryDecision(False, why_not=f"retry budget of {policy.budget:g}s exhausted")
    return RetryDecision(True, delay=delay)
