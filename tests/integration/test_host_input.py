"""What the worker writes to a python host's input while it runs a task (queued
requests, withdraws) stays small: the host reads its input only between tasks, so a
full pipe would make the worker's loop wait for it."""

from __future__ import annotations

import fcntl
import struct
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from support import wait_for

from ordo.runners import pyhost
from ordo.runners.python import Host


def _in_pipe(host: Host) -> int:
    """Bytes written to the host's input that it has not read yet."""
    assert host.proc.stdin is not None
    found = fcntl.ioctl(host.proc.stdin.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", found)[0])


@pytest.fixture
def busy_host(tmp_path: Path) -> Any:
    """A host running a task that naps until its file is removed; the request."""
    (tmp_path / "steps.py").write_text(
        "import os, time\n"
        "def nap(path):\n"
        "    while os.path.exists(path):\n"
        "        time.sleep(0.01)\n"
    )
    flag = tmp_path / "napping"
    flag.touch()
    request = {
        "function": "steps:nap",
        "with": {"path": str(flag)},
        "cwd": str(tmp_path),
        "base_dir": str(tmp_path),
        "env_set": {},
        "env_unset": [],
    }
    host = Host()
    try:
        assert host.send(request)
        wait_for("the host to take the request", lambda: _in_pipe(host) == 0, 30)
        time.sleep(0.05)  # (it reads a line at a time: now it runs it)
        yield host, request
    finally:
        flag.unlink(missing_ok=True)
        host.stop(1.0)


def test_a_withdraw_is_written_once_until_more_is_queued(busy_host: Any) -> None:
    host, request = busy_host
    drop = len(pyhost.DROP) + 1
    for _ in range(5):  # (every step of the worker may ask)
        host.withdraw()
    assert _in_pipe(host) == drop
    assert host.send({**request, "queued": True}, queued=True)
    queued = _in_pipe(host) - drop
    host.withdraw()
    host.withdraw()
    assert _in_pipe(host) == 2 * drop + queued


def test_queued_requests_stop_at_the_room_left_in_the_hosts_input(busy_host: Any) -> None:
    host, request = busy_host
    big = {**request, "queued": True, "with": {**request["with"], "pad": "x" * 3000}}
    sent = 0
    while host.send(big, queued=True):
        sent += 1
        assert sent < 100
    assert sent >= 1
    assert _in_pipe(host) <= host.room
    assert host.alive  # (nothing was sent of the one that did not fit)
