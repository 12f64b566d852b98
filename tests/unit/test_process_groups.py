"""Stopping the process groups of lost attempts (ordo.runners.process.stop_groups), with
real processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ordo.runners.process import group_start, stop_groups


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A shell leading its own process group, with a child that ignores SIGTERM."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "sh -c 'trap \"\" TERM; sleep 60' & sleep 60"],
        start_new_session=True,
    )
    yield proc
    stop_groups([(proc.pid, None)], 0.1)
    proc.wait()


def test_a_lost_attempts_group_is_stopped_and_waited_for(
    group: subprocess.Popen[bytes],
) -> None:
    started = group_start(group.pid)
    assert started is not None
    assert stop_groups([(group.pid, started)], 0.2) == [group.pid]
    group.wait(timeout=5)  # the leader is gone (its child too: SIGKILL after the grace)
    assert stop_groups([(group.pid, started)], 0.2) == []


def test_a_group_number_now_led_by_another_process_is_left_alone(
    group: subprocess.Popen[bytes],
) -> None:
    started = group_start(group.pid)
    assert started is not None
    assert stop_groups([(group.pid, started - 1)], 0.2) == []  # another process's number
    assert group.poll() is None
