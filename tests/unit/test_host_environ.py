"""A python host sets each task's environment (``ordo.runners.pyhost.Environ``): what a
task and the processes it starts see, and that a long-lived host does not keep every
value its tasks were given."""

from __future__ import annotations

import gc
import os
import subprocess
import tracemalloc
from collections.abc import Iterator

import pytest

from ordo.runners.pyhost import Environ, _CLib

NAMES = ("ORDO_TEST_ENV_ID", "ORDO_TEST_ENV_FILE", "TEST_ENV_PLAIN")


class Counting(_CLib):
    """The C library's functions, counting the strings ``putenv`` was given."""

    def __init__(self) -> None:
        super().__init__()
        self.loading.join()
        assert self.putenv is not None
        self.given = 0
        putenv = self.putenv

        def counted_putenv(entry: bytes) -> int:
            self.given += 1
            return putenv(entry)

        self.putenv = counted_putenv


@pytest.fixture
def environ() -> Iterator[Environ]:
    before = {name: os.environ.get(name) for name in NAMES}
    try:
        yield Environ(Counting())
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
    del os.environ["ORDO_TEST_ENV_ID"]  # (the task removes it)
    environ.change({"ORDO_TEST_ENV_ID": "3"}, [])
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "3"


@pytest.mark.parametrize(
    ("changed", "error"),
    [
        ({"ORDO_TEST_ENV_ID": "a\0b"}, ValueError),  # a NUL in the value
        ({"ORDO_TEST=ENV": "x"}, ValueError),  # an equals sign in the name
        ({"": "x"}, (ValueError, OSError)),  # no name
    ],
)
def test_a_bad_variable_is_refused_as_os_environ_refuses_it(
    environ: Environ, changed: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        environ.change(changed, [])
    assert "ORDO_TEST" not in os.environ


def test_a_host_keeps_only_the_last_values_its_tasks_were_given(environ: Environ) -> None:
    """The C library's ``setenv`` keeps every string it was ever given (290 bytes a
    task: a host grew by 57 MB over 200,000 tasks); an attempt's own variables are
    set without it, each string let go a few changes after it was replaced."""
    c_lib = environ.c
    assert isinstance(c_lib, Counting)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5_000):  # (each value new, as an attempt's ids and files are)
            environ.change({"ORDO_TEST_ENV_ID": str(i), "ORDO_TEST_ENV_FILE": f"/tmp/o/{i}"}, [])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert c_lib.given == 10_000  # (each through putenv, none through setenv)
    assert grown < 20_000  # (all of them kept: 10,000 strings, over 400 kB)
    assert set(environ.owned) == {"ORDO_TEST_ENV_ID", "ORDO_TEST_ENV_FILE"}
    assert len(environ.replaced) == Environ.KEPT
    assert _seen_by_a_child("ORDO_TEST_ENV_FILE") == "/tmp/o/4999"
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "4999"
    environ.change({}, ["ORDO_TEST_ENV_ID", "ORDO_TEST_ENV_FILE"])
    assert not environ.owned
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "unset"


def test_a_host_on_its_way_out_leaves_the_environment_copies_of_its_own(
    environ: Environ,
) -> None:
    """What runs while a host ends (a thread a task left, an ``atexit`` function) may
    still read the environment: once the host lets go of its strings, the variables
    hold the C library's copies of their values."""
    environ.change({"ORDO_TEST_ENV_ID": "still here", "ORDO_TEST_ENV_FILE": "/tmp/o/x"}, [])
    environ.release()
    assert not environ.owned
    environ.replaced.clear()  # (as if the host were gone)
    gc.collect()
    # (where the freed ones were, of their size)
    litter = [bytes([65 + i % 26]) * n for i in range(2_000) for n in range(20, 40)]
    assert _seen_by_a_child("ORDO_TEST_ENV_ID") == "still here"
    assert _seen_by_a_child("ORDO_TEST_ENV_FILE") == "/tmp/o/x"
    assert os.environ["ORDO_TEST_ENV_ID"] == "still here"
    del litter
