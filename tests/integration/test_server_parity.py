"""The CLI with ``--server`` prints what it prints on the store itself (``logs``,
``executions list``, ``executions history``); the state history through the API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from server_support import Server, run_ordo, running_server, server_env

FLOW = """\
id: fan
tasks:
  - id: list
    type: shell
    command: |
      echo listing
      echo 'items=[1,2,3]' >> "$ORDO_OUTPUTS"
  - id: work
    type: shell
    depends_on: [list]
    for_each: "{{ outputs.list.items }}"
    command: echo item {{ fork.value }}; echo oops {{ fork.value }} >&2
  - id: flaky
    type: shell
    depends_on: [work]
    retry: {attempts: 2}
    command: echo trying; exit 3
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("parity")
    env = server_env(folder)
    db = str(folder / "ordo.db")
    path = folder / "fan.yaml"
    path.write_text(FLOW)
    ran = run_ordo(env, "--db", db, "run", str(path), "-l", "team=data")
    assert ran.returncode == 1, ran.stderr  # flaky fails twice
    assert run_ordo(env, "--db", db, "run", str(path), "--dev").returncode == 1
    with running_server(db, env, folder) as s:
        yield s


def _both(server: Server, *args: str) -> tuple[str, str]:
    local = server.cli(*args)
    remote = run_ordo(server.env, "--server", server.url, "--token", server.reader, *args)
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    return local.stdout, remote.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("logs", "1"),
        ("logs", "1", "--task", "work"),
        ("logs", "1", "--task", "flaky", "--attempt", "2"),
        ("executions", "list"),
        ("executions", "list", "--json"),
        ("executions", "list", "--dev"),
        ("executions", "list", "--label", "team=data"),
        ("executions", "history", "1"),
        ("executions", "history", "1", "--json"),
    ],
)
def test_remote_cli_prints_what_the_local_one_prints(server: Server, args: tuple[str, ...]) -> None:
    local, remote = _both(server, *args)
    assert remote == local
    assert local.strip()


def test_logs_name_task_and_attempt_on_every_line(server: Server) -> None:
    local, _ = _both(server, "logs", "1")
    lines = local.splitlines()
    assert len(lines) == 1 + 1 + 6 + 2  # list, the fork, 3 items x 2, flaky x 2
    assert any(" work[2]#1 stderr: oops 3" in line for line in lines)
    assert any(" flaky#2 stdout: trying" in line for line in lines)


def test_state_history_lists_every_transition_with_time_and_reason(server: Server) -> None:
    rows = server.http.get("/api/executions/1/history").json()
    moves = [(r["task"], r["from"], r["to"]) for r in rows]
    assert moves[0] == (None, None, "CREATED")
    assert (None, "CREATED", "RUNNING") in moves
    assert ("work[1]", "RUNNING", "SUCCESS") in moves
    assert moves[-1] == (None, "RUNNING", "FAILED")
    assert rows[-1]["reason"] == "task 'flaky' failed: exit code 3"
    assert all(r["at_iso"].endswith("+00:00") for r in rows)
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    text, _ = _both(server, "executions", "history", "1")
    assert text.splitlines()[0].split() == ["TIME", "WHAT", "FROM", "TO", "REASON"]
    assert json.loads(_both(server, "executions", "history", "1", "--json")[0]) == rows
    missing = server.http.get("/api/executions/99/history")
    assert missing.status_code == 404
