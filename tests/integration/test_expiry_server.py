"""``ordo server`` applies the retention by itself: an execution past a 0-day retention
is gone once the server started, and the server logs what it deleted; a saved one stays."""

from __future__ import annotations

import json
from pathlib import Path

from server_support import run_ordo, running_server, server_env
from support import wait_for


def test_a_server_with_a_zero_day_retention_expires_ended_executions(tmp_path: Path) -> None:
    env = server_env(tmp_path, ORDO_RETENTION_DAYS="0")
    db = str(tmp_path / "ordo.db")
    flow = tmp_path / "once.yaml"
    flow.write_text("id: once\ntasks:\n  - {id: a, type: shell, command: echo done}\n")
    for _ in range(2):
        assert run_ordo(env, "--db", db, "run", str(flow)).returncode == 0
    saved = run_ordo(env, "--db", db, "executions", "save", "2", "--name", "keep")
    assert saved.returncode == 0, saved.stderr
    with running_server(db, env, tmp_path) as server:
        wait_for("the server's sweep", lambda: "retention (0 days" in server.log.read_text())
        assert "deleted 1 execution (0 dev)" in server.log.read_text()
        listed = json.loads(server.cli("executions", "list", "--json").stdout)
        assert [e["id"] for e in listed] == [2]
