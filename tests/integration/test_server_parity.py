"""The CLI with ``--server`` prints what it prints on the store itself (``logs``,
``executions list``, ``executions history``); the state history through the API; what
``--server`` sends: a flow file that references no file beside it, never a new revision
for the same content."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

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


def test_a_flow_with_files_beside_it_is_refused_with_a_pointer_to_deploy(
    server: Server, tmp_path: Path
) -> None:
    (tmp_path / "checks.py").write_text("def ok():\n    return {}\n")
    flow = tmp_path / "checked.yaml"
    flow.write_text("id: checked\ntasks:\n  - {id: c, type: python, function: 'checks:ok'}\n")
    remote = ["--server", server.url, "--token", server.token]
    for verb in (["run", str(flow)], ["flows", "add", str(flow)]):
        refused = run_ordo(server.env, *remote, *verb)
        assert refused.returncode == 2, refused.stderr
        assert "references files beside it (checks.py)" in refused.stderr
        assert f"ordo deploy {tmp_path}" in refused.stderr
    assert server.http.get("/api/flows/default/checked").status_code == 404


def test_the_same_content_never_makes_a_new_revision(server: Server, tmp_path: Path) -> None:
    """Sent again and again, the same text is one revision. Run from its file on the
    store itself it runs from the file's folder, not the server's: one new revision for
    that, not one per send."""
    flow = tmp_path / "same.yaml"
    flow.write_text("id: same\ntasks:\n  - {id: a, type: shell, command: 'echo same'}\n")
    remote = ["--server", server.url, "--token", server.token]

    def numbers() -> list[int]:
        rows = server.http.get("/api/flows/default/same/revisions").json()
        return [int(r["revision"]) for r in rows]

    for verb in (["run", str(flow)], ["run", str(flow)], ["flows", "add", str(flow)]):
        sent = run_ordo(server.env, *remote, *verb)
        assert sent.returncode == 0, sent.stderr
    assert numbers() == [1]
    assert server.cli("run", str(flow), "-q").returncode == 0
    assert server.cli("run", str(flow), "-q").returncode == 0
    assert numbers() == [2, 1]
    for _ in range(2):
        assert run_ordo(server.env, *remote, "run", str(flow)).returncode == 0
    assert numbers() == [3, 2, 1]
    flow.write_text("id: same\ntasks:\n  - {id: a, type: shell, command: 'echo changed'}\n")
    assert run_ordo(server.env, *remote, "flows", "add", str(flow)).returncode == 0
    assert numbers() == [4, 3, 2, 1]
