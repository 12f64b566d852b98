"""Retry rules: attempts, backoff, max_delay, jitter, exit codes, timeouts, budget."""

from __future__ import annotations

import random

from ordo.model import RetryPolicy
from ordo.retry import backoff_delay, decide


def rng() -> random.Random:
    return random.Random(1)


def test_no_retry_when_attempts_are_used_up() -> None:
    d = decide(
        RetryPolicy(attempts=2),
        attempt_number=2,
        reason="exit_code",
        exit_code=1,
        elapsed=0,
        rng=rng(),
    )
    assert not d.retry
    assert d.why_not == "no attempts left (2 allowed)"


def test_retry_waits_backoff_before_next_attempt() -> None:
    p = RetryPolicy(attempts=5, delay=2.0, backoff=3.0)
    assert [backoff_delay(p, n, rng()) for n in (1, 2, 3)] == [2.0, 6.0, 18.0]
    d = decide(p, attempt_number=2, reason="exit_code", exit_code=1, elapsed=0, rng=rng())
    assert d.retry and d.delay == 6.0


def test_max_delay_caps_the_backoff() -> None:
    p = RetryPolicy(attempts=9, delay=10.0, backoff=10.0, max_delay=60.0)
    assert backoff_delay(p, 4, rng()) == 60.0


def test_jitter_spreads_delay_within_fraction() -> None:
    p = RetryPolicy(attempts=9, delay=10.0, jitter=0.1)
    r = random.Random(5)
    delays = [backoff_delay(p, 1, r) for _ in range(200)]
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(set(delays)) > 100


def test_only_listed_exit_codes_are_retried() -> None:
    p = RetryPolicy(attempts=3, on_exit_codes=(1, 75))
    assert decide(p, attempt_number=1, reason="exit_code", exit_code=75, elapsed=0, rng=rng()).retry
    d = decide(p, attempt_number=1, reason="exit_code", exit_code=2, elapsed=0, rng=rng())
    assert not d.retry
    assert d.why_not == "exit code 2 is not in on_exit_codes [1, 75]"


def test_timeouts_retry_unless_on_timeout_is_false() -> None:
    p = RetryPolicy(attempts=3, on_exit_codes=(1,))
    assert decide(p, attempt_number=1, reason="timeout", exit_code=None, elapsed=0, rng=rng()).retry
    p2 = RetryPolicy(attempts=3, on_timeout=False)
    d = decide(p2, attempt_number=1, reason="timeout", exit_code=None, elapsed=0, rng=rng())
    assert not d.retry and "on_timeout: false" in d.why_not


def test_budget_counts_elapsed_time_and_the_coming_delay() -> None:
    p = RetryPolicy(attempts=9, delay=5.0, budget=60.0)
    assert decide(p, attempt_number=1, reason="exit_code", exit_code=1, elapsed=55, rng=rng()).retry
    d = decide(p, attempt_number=1, reason="exit_code", exit_code=1, elapsed=56, rng=rng())
    assert not d.retry and d.why_not == "retry budget of 60s exhausted"


def test_template_errors_and_kills_are_never_retried() -> None:
    p = RetryPolicy(attempts=5)
    for reason in ("template", "killed", "connection", "for_each"):
        assert not decide(
            p, attempt_number=1, reason=reason, exit_code=None, elapsed=0, rng=rng()
        ).retry


def test_failed_pre_checks_are_never_retried() -> None:
    d = decide(
        RetryPolicy(attempts=5),
        attempt_number=1,
        reason="pre_check",
        exit_code=None,
        elapsed=0,
        rng=rng(),
    )
    assert not d.retry
    assert d.why_not == "pre_check attempts are not retried"


def test_failed_post_checks_retry_unless_on_post_check_is_false() -> None:
    p = RetryPolicy(attempts=3, on_exit_codes=(75,))
    assert decide(p, attempt_number=1, reason="post_check", exit_code=0, elapsed=0, rng=rng()).retry
    p2 = RetryPolicy(attempts=3, on_post_check=False)
    d = decide(p2, attempt_number=1, reason="post_check", exit_code=0, elapsed=0, rng=rng())
    assert not d.retry
    assert d.why_not == "failed post checks are not retried (on_post_check: false)"


def test_on_exit_false_never_retries_exit_codes_but_still_timeouts() -> None:
    p = RetryPolicy(attempts=3, on_exit=False)
    by_code = decide(p, attempt_number=1, reason="exit_code", exit_code=1, elapsed=0, rng=rng())
    assert not by_code.retry and by_code.why_not == "failures by exit code are not retried"
    timed_out = decide(p, attempt_number=1, reason="timeout", exit_code=None, elapsed=0, rng=rng())
    assert timed_out.retry
    assert RetryPolicy.from_dict(p.to_dict()) == p
