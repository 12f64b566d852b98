"""A python host sets each task's environment (``ordo.runners.pyhost.Environ``): what a
task and the processes it starts see, and that a long-lived host does not grow with the
values it was given."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from ordo.runners.pyhost import Environ, _CLib

NAMES = ("ORDO_TEST_ENV_ID", "TEST_ENV_PLAIN")


@pytest.fixture
def environ() -> Iterator[Environ]:
    c_lib = _CLib()
    c_lib.loading.join()
    assert c_lib.putenv is not None
    before = {name: os.environ.get(name) for name in NAMES}
    try:
        yield Environ(c_lib)
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _seen_by_a_child(name: str) -> str:
    """The value a process started with the host's own environment sees."""
    out = subprocess.run(
        ["sh", "-c", f'printf %s "${{{name}-unset}}"'], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_a_tasks_variables_are_seen_by_python_and_by_the_processes_it_starts(
    environ: Environ,
) -> None:
    environ.change({"ORDO_TEST_ENV_ID": "7", "TEST_ENV_PLAIN": "plain"}, [])
    assert os.environ["ORDO_TEST_ENV_ID"] == "7"
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "7"
    assert _seen_by_a_child("TEST_ENV_PLAIN") == "plain"

    environ.change({"ORDO_TEST_ENV_ID": "8 é"}, ["TEST_ENV_PLAIN"])  # (not ASCII)
    assert os.environ["ORDO_TEST_ENV_ID"] == "8 é"
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "8 é"
    assert "TEST_ENV_PLAIN" not in os.environ
    assert _seen_by_a_child("TEST_ENV_PLAIN") == "unset"

    environ.change({}, ["ORDO_TEST_ENV_ID"])
    assert "ORDO_TEST_ENV_ID" not in os.environ
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "unset"


def test_a_task_that_set_its_own_variable_is_followed_by_the_next_tasks_value(
    environ: Environ,
) -> None:
    environ.change({"ORDO_TEST_ENV_ID": "1"}, [])
    os.environ["ORDO_TEST_ENV_ID"] = "set by the task"  # (the C library's copy now)
    environ.change({"ORDO_TEST_ENV_ID": "2"}, [])
    assert os.environ["ORDO_TEST_ENV_ID"] == "2"
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "2"


def test_a_bad_value_is_refused_as_os_environ_refuses_it(environ: Environ) -> None:
    with pytest.raises(ValueError, match="null"):
        environ.change({"ORDO_TEST_ENV_ID": "a\0b"}, [])


def _resident_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_a_host_does_not_keep_every_value_its_tasks_were_given(environ: Environ) -> None:
    """The C library's ``setenv`` keeps every string it was ever given (290 bytes a
    task: a host grew by 57 MB over 200,000 tasks); the host sets variables without it."""
    folder = "/tmp/ordo-abcdefgh/"
    environ.change({"ORDO_TEST_ENV_ID": "0", "TEST_ENV_PLAIN": folder}, [])
    before = _resident_kib()
    for i in range(60_000):  # (each value new, as an attempt's ids and files are)
        environ.change({"ORDO_TEST_ENV_ID": str(i), "TEST_ENV_PLAIN": f"{folder}{i}-1.outputs"}, [])
    grown = _resident_kib() - before
    assert grown < 2_000, f"grew by {grown} KiB"  # (setenv: about 9,000)
    assert _seen_by_a_child("TEST_ENV_PLAIN") == f"{folder}59999-1.outputs"
