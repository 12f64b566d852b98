"""Saved executions, ``--from-saved``, ``--dev`` and ``ordo gc`` through real ``ordo``
subprocesses, as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest


def ordo(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def shown(cmd: list[str], env: dict[str, str], ex_id: int) -> dict[str, Any]:
    result = ordo(cmd, env, "executions", "show", str(ex_id), "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def listed(cmd: list[str], env: dict[str, str], *args: str) -> list[int]:
    result = ordo(cmd, env, "executions", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return [e["id"] for e in json.loads(result.stdout)]


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    return write(
        tmp_path / "hello.yaml",
        """
        id: hello
        inputs:
          who: {type: string, default: world}
          times: {type: int, default: 1}
        tasks:
          - id: greet
            type: shell
            command: 'echo "hello {{ inputs.who }} x{{ inputs.times }}"'
        """,
    )


def test_a_saved_execution_presets_the_inputs_of_a_new_run(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    first = ordo(ordo_cmd, ordo_env, "run", str(hello), "-q", "-i", "who=ann", "-i", "times=3")
    assert first.returncode == 0, first.stderr
    saved = ordo(
        ordo_cmd, ordo_env, "executions", "save", "1", "--name", "ann-3", "--description", "ok"
    )
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == "execution 1 saved as 'ann-3'"

    again = ordo(ordo_cmd, ordo_env, "run", str(hello), "-q", "--from-saved", "ann-3")
    assert again.returncode == 0, again.stderr
    assert shown(ordo_cmd, ordo_env, 2)["inputs"] == {"who": "ann", "times": 3}
    override = ordo(
        ordo_cmd, ordo_env, "run", str(hello), "-q", "--from-saved", "ann-3", "-i", "times=5"
    )
    assert override.returncode == 0, override.stderr
    assert shown(ordo_cmd, ordo_env, 3)["inputs"] == {"who": "ann", "times": 5}
    submitted = ordo(ordo_cmd, ordo_env, "submit", str(hello), "--from-saved", "ann-3")
    assert submitted.stdout.strip() == "4"
    assert shown(ordo_cmd, ordo_env, 4)["inputs"] == {"who": "ann", "times": 3}

    doc = shown(ordo_cmd, ordo_env, 1)
    assert doc["saved"]["name"] == "ann-3" and doc["saved"]["description"] == "ok"
    assert shown(ordo_cmd, ordo_env, 2)["saved"] is None
    assert listed(ordo_cmd, ordo_env, "--saved") == [1]
    assert listed(ordo_cmd, ordo_env, "--no-saved") == [4, 3, 2]
    table = ordo(ordo_cmd, ordo_env, "executions", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "FLOW", "STATE", "MARKS"]
    assert table[-1].split()[:4] == ["1", "default/hello", "SUCCESS", "saved:ann-3"]
    text = ordo(ordo_cmd, ordo_env, "executions", "show", "1").stdout
    assert re.search(r"^  saved as 'ann-3' at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: ok$", text, re.M)

    unsaved = ordo(ordo_cmd, ordo_env, "executions", "unsave", "1")
    assert unsaved.stdout.strip() == "execution 1 is no longer saved (it was saved as 'ann-3')"
    assert listed(ordo_cmd, ordo_env, "--saved") == []


def test_save_and_from_saved_errors_are_clear(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path, tmp_path: Path
) -> None:
    for _ in range(2):
        assert ordo(ordo_cmd, ordo_env, "run", str(hello), "-q").returncode == 0
    assert ordo(ordo_cmd, ordo_env, "executions", "save", "1", "--name", "a").returncode == 0
    cases = [
        (
            ("executions", "save", "1", "--name", "b"),
            2,
            "error: execution 1 is already saved as 'a'; to save it as 'b', unsave it first: "
            "ordo executions unsave 1",
        ),
        (
            ("executions", "save", "2", "--name", "a"),
            2,
            "error: the name 'a' is taken by execution 1: choose another name, or unsave it "
            "first: ordo executions unsave 1",
        ),
        (
            ("executions", "save", "2", "--name", "42"),
            2,
            "error: --name '42': a saved execution's name must not be only digits (it would "
            "read as an execution id)",
        ),
        (
            ("executions", "save", "2", "--name", " "),
            2,
            "error: --name ' ': a saved execution's name must not be empty nor start or end "
            "with spaces",
        ),
        (("executions", "save", "9", "--name", "x"), 2, "error: execution 9 not found"),
        (("executions", "unsave", "2"), 2, "error: execution 2 is not saved"),
        (
            ("run", str(hello), "--from-saved", "nope"),
            2,
            "error: no saved execution named 'nope' (saved: a)",
        ),
        (
            ("submit", str(hello), "--from-saved", "nope"),
            2,
            "error: no saved execution named 'nope' (saved: a)",
        ),
    ]
    other = write(
        tmp_path / "other.yaml", "id: other\ntasks:\n  - {id: t, type: shell, command: 'true'}\n"
    )
    cases.append(
        (
            ("run", str(other), "--from-saved", "a"),
            2,
            "error: --from-saved 'a': execution 1 is of flow default/hello, not default/other",
        )
    )
    for args, code, message in cases:
        result = ordo(ordo_cmd, ordo_env, *args)
        assert (result.returncode, result.stderr.strip()) == (code, message), args
    assert listed(ordo_cmd, ordo_env) == [2, 1]  # no failed command started one


def test_a_saved_input_the_flow_no_longer_declares_is_left_out_with_a_note(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    assert ordo(ordo_cmd, ordo_env, "run", str(hello), "-q", "-i", "who=bo").returncode == 0
    assert ordo(ordo_cmd, ordo_env, "executions", "save", "1", "--name", "bo").returncode == 0
    hello.write_text(
        hello.read_text()
        .replace("  times: {type: int, default: 1}\n", "")
        .replace(" x{{ inputs.times }}", "")
    )
    result = ordo(ordo_cmd, ordo_env, "run", str(hello), "-q", "--from-saved", "bo")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "note: input 'times' of saved execution 'bo' is no longer an input of default/hello; "
        "left out"
    )
    assert shown(ordo_cmd, ordo_env, 2)["inputs"] == {"who": "bo"}


def test_dev_marks_an_execution_and_the_children_it_starts(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    child = write(
        tmp_path / "child.yaml",
        "id: child\ntasks:\n  - {id: work, type: shell, command: 'echo child'}\n",
    )
    parent = write(
        tmp_path / "parent.yaml",
        """
        id: parent
        tasks:
          - {id: sub, type: flow, flow: child}
        """,
    )
    assert ordo(ordo_cmd, ordo_env, "flows", "add", str(child)).returncode == 0
    dev = ordo(ordo_cmd, ordo_env, "run", str(parent), "-q", "--dev")
    assert dev.returncode == 0, dev.stderr
    plain = ordo(ordo_cmd, ordo_env, "run", str(parent), "-q")
    assert plain.returncode == 0, plain.stderr
    submitted = ordo(ordo_cmd, ordo_env, "submit", str(child), "--dev")
    assert submitted.stdout.strip() == "5"

    assert [shown(ordo_cmd, ordo_env, i)["dev"] for i in (1, 2, 3, 4, 5)] == [
        True,  # parent --dev
        True,  # its child
        False,
        False,
        True,  # submit --dev
    ]
    assert shown(ordo_cmd, ordo_env, 2)["parent_id"] == 1
    assert listed(ordo_cmd, ordo_env, "--dev") == [5, 2, 1]
    assert listed(ordo_cmd, ordo_env, "--no-dev") == [4, 3]
    table = ordo(ordo_cmd, ordo_env, "executions", "list").stdout.splitlines()
    marks = {line.split()[0]: line.split()[3] for line in table[1:]}
    assert marks["1"] == "dev" and marks["2"] == "dev" and marks["3"] != "dev"
    head = ordo(ordo_cmd, ordo_env, "executions", "show", "2").stdout.splitlines()[0]
    assert head.split() == ["execution", "2", "default/child", "SUCCESS", "dev"]


def gc(cmd: list[str], env: dict[str, str], *args: str, **days: str) -> dict[str, Any]:
    env = {**env}
    if "days" in days:
        env["ORDO_RETENTION_DAYS"] = days["days"]
    if "dev_days" in days:
        env["ORDO_RETENTION_DEV_DAYS"] = days["dev_days"]
    result = ordo(cmd, env, "gc", "--json", *args)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_gc_deletes_ended_unsaved_executions_past_their_retention(
    ordo_cmd: list[str], ordo_env: dict[str, str], hello: Path
) -> None:
    for extra in ((), (), ("--dev",), ("--dev",)):
        assert ordo(ordo_cmd, ordo_env, "run", str(hello), "-q", *extra).returncode == 0
    assert ordo(ordo_cmd, ordo_env, "executions", "save", "1", "--name", "keep").returncode == 0
    assert ordo(ordo_cmd, ordo_env, "executions", "save", "3", "--name", "dev").returncode == 0

    nothing = ordo(ordo_cmd, ordo_env, "gc")  # the defaults: 30 days, dev 3 days
    assert nothing.stdout.splitlines() == [
        "retention: 30 days (default); dev executions: 3 days (default)",
        "nothing to delete: no ended, unsaved execution is older than its retention",
    ]
    env = {**ordo_env, "ORDO_RETENTION_DAYS": "0", "ORDO_RETENTION_DEV_DAYS": "30"}
    dry = ordo(ordo_cmd, env, "gc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == (
        "retention: 0 days (ORDO_RETENTION_DAYS); dev executions: 30 days (ORDO_RETENTION_DEV_DAYS)"
    )
    # (a task run's claim and success are held by its attempt: no history rows)
    assert lines[1].startswith("would delete 1 execution and its 6 rows in ")
    assert lines[2].startswith("  ended from ")
    assert lines[3] == (
        "  rows: task_run_deps 0, ready 0, outputs 0, metrics 0, logs 1, state_history 3, "
        "checks 0, trigger_ticks 0, notifications 0, steps 0, attempts 1, task_runs 1"
    )
    assert lines[4] == "nothing deleted (--dry-run)"
    assert listed(ordo_cmd, ordo_env) == [4, 3, 2, 1]

    plain = gc(ordo_cmd, ordo_env, days="0", dev_days="30")
    assert (plain["executions"], plain["dev_executions"], plain["dry_run"]) == (1, 0, False)
    assert plain["rows"]["logs"] == 1 and plain["batches"] == 1
    assert listed(ordo_cmd, ordo_env) == [4, 3, 1]
    dev = gc(ordo_cmd, ordo_env, days="0", dev_days="0")
    assert (dev["executions"], dev["dev_executions"]) == (1, 1)
    assert listed(ordo_cmd, ordo_env) == [3, 1]  # the saved ones stay
    shown_gone = ordo(ordo_cmd, ordo_env, "executions", "show", "2")
    assert (shown_gone.returncode, shown_gone.stderr.strip()) == (2, "error: execution 2 not found")

    text = ordo(
        ordo_cmd,
        {**ordo_env, "ORDO_RETENTION_DAYS": "0"},
        "executions",
        "unsave",
        "1",
    )
    assert text.returncode == 0
    deleted = ordo(ordo_cmd, {**ordo_env, "ORDO_RETENTION_DAYS": "0"}, "gc")
    lines = deleted.stdout.splitlines()
    assert lines[1].startswith("deleted 1 execution and its 6 rows in ")
    assert lines[-1].startswith("space: ") and "(incremental vacuum)" in lines[-1]


def test_gc_settings_errors_name_the_key_and_where_it_came_from(
    ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    home = Path(ordo_env["ORDO_HOME"])
    home.mkdir(parents=True)
    (home / "settings.toml").write_text("[retention]\ndays = -1\n")
    bad_file = ordo(ordo_cmd, ordo_env, "gc")
    assert bad_file.returncode == 2
    assert bad_file.stderr.strip() == (
        f"error: {home / 'settings.toml'}: retention.days: must be >= 0, got -1"
    )
    (home / "settings.toml").write_text("[retention]\ndays = 10\n")
    bad_env = ordo(ordo_cmd, {**ordo_env, "ORDO_RETENTION_DEV_DAYS": "a week"}, "gc")
    assert bad_env.returncode == 2
    assert bad_env.stderr.strip() == (
        "error: environment ORDO_RETENTION_DEV_DAYS: retention.dev_days: must be a number of "
        "days, got 'a week'"
    )
    good = ordo(ordo_cmd, {**ordo_env, "ORDO_RETENTION_DEV_DAYS": "1.5"}, "gc", "--dry-run")
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[0] == (
        f"retention: 10 days ({home / 'settings.toml'}); dev executions: 1.5 days "
        "(ORDO_RETENTION_DEV_DAYS)"
    )
    batch = ordo(ordo_cmd, ordo_env, "gc", "--batch", "0")
    assert (batch.returncode, batch.stderr.strip()) == (
        2,
        "error: --batch must be at least 1, found 0",
    )
    for result in (bad_file, bad_env, batch):
        assert "Traceback" not in result.stderr


def test_gc_on_postgres_deletes_and_leaves_space_to_autovacuum(
    ordo_cmd: list[str], ordo_env: dict[str, str], postgres_url: str, hello: Path
) -> None:
    env = {**ordo_env, "ORDO_DB": postgres_url}
    for extra in ((), (), ("--dev",)):
        assert ordo(ordo_cmd, env, "run", str(hello), "-q", *extra).returncode == 0
    assert ordo(ordo_cmd, env, "executions", "save", "2", "--name", "pg").returncode == 0
    result = ordo(
        ordo_cmd, {**env, "ORDO_RETENTION_DAYS": "0", "ORDO_RETENTION_DEV_DAYS": "0"}, "gc"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("deleted 2 executions (1 dev) and their 12 rows in ")
    assert lines[-1] == "space: on PostgreSQL, autovacuum makes the space reusable"
    assert listed(ordo_cmd, env) == [2]
