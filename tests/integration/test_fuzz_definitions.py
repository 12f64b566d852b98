"""A few hundred generated hostile flow files and Executioner configs (see
:mod:`hostile_inputs`) through ``ordo validate``, ``ordo plan`` and ``ordo executioner
--dry-run``: every one ends with exit 0, 1 or 2 and a message, never a traceback, within
a generous deadline; a sample runs as real processes under a memory limit (RLIMIT_AS)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile_inputs import CONFIG_KINDS, FLOW_KINDS, Case, config_cases, flow_cases

from ordo.cli.main import main

#: A hang detector, not a speed check: a busy 2-core runner finishes each in seconds.
DEADLINE = 60.0
MEMORY = 1536 * 1024 * 1024  # bytes of address space for the subprocesses


def _group(
    cases: list[Case], kinds: list[tuple[Callable[..., Case], int]]
) -> dict[str, list[Case]]:
    groups: dict[str, list[Case]] = {}
    index = 0
    for make, count in kinds:
        groups[make.__name__.strip("_")] = cases[index : index + count]
        index += count
    return groups


FLOWS = _group(list(flow_cases()), FLOW_KINDS)
CONFIGS = _group(list(config_cases()), CONFIG_KINDS)


def run_main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    started = time.monotonic()
    try:
        code = main(argv)
    except BaseException:
        pytest.fail(f"ordo {' '.join(argv)} raised:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE, f"ordo {argv[0]} took {elapsed:.0f}s"
    return code, out + err


def write(tmp_path: Path, number: int, case: Case) -> str:
    path = tmp_path / f"{number:03d}-{case.name}{case.suffix}"
    path.write_bytes(case.data)
    return str(path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORDO_SERVER", raising=False)
    return tmp_path


@pytest.mark.parametrize("kind", sorted(FLOWS))
def test_hostile_flow_files_end_with_an_exit_code_and_a_message(
    kind: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for number, case in enumerate(FLOWS[kind]):
        path = write(home, number, case)
        for command in ("validate", "plan"):
            code, output = run_main(capsys, [command, path])
            assert code in (0, 2), (case.name, command, code, output[-2000:])
            assert "Traceback" not in output, (case.name, output[-2000:])
            if code == 2:
                assert path in output, (case.name, output[-2000:])  # the file is named
        os.unlink(path)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_hostile_executioner_configs_end_with_an_exit_code_and_a_message(
    kind: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(home / "executioner.db")
    for number, case in enumerate(CONFIGS[kind]):
        path = write(home, number, case)
        code, output = run_main(capsys, ["executioner", "-c", path, "--dry-run", "--db", db])
        assert code in (0, 1, 2), (case.name, code, output[-2000:])
        assert "Traceback" not in output, (case.name, output[-2000:])
        os.unlink(path)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


SAMPLE = [
    ("alias_bomb", "validate"),
    ("deep_yaml", "validate"),
    ("deep_json", "plan"),
    ("huge", "validate"),
    ("many_tasks", "validate"),
    ("long_int", "plan"),
    ("doubling", "executioner"),
    ("quadratic_command", "executioner"),
]


@pytest.mark.parametrize(("kind", "command"), SAMPLE)
def test_hostile_inputs_in_a_real_process_stay_within_memory_and_time(
    kind: str, command: str, home: Path
) -> None:
    cases = CONFIGS[kind] if command == "executioner" else FLOWS[kind]
    # the biggest of the kind: most bytes, so most likely to blow up
    case = max(cases, key=lambda c: len(c.data))
    path = write(home, 0, case)
    argv = [command, path] if command != "executioner" else [command, "-c", path, "--dry-run"]
    argv += ["--db", str(home / "ordo.db")] if command == "executioner" else []
    env = {**os.environ, "ORDO_HOME": str(home / "home")}
    env.pop("ORDO_SERVER", None)
    done = subprocess.run(
        [sys.executable, "-m", "ordo.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        preexec_fn=_limit_memory,
    )
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1, 2), (case.name, done.returncode, output[-2000:])
    assert "Traceback" not in output and "MemoryError" not in output, output[-2000:]
