"""``ordo`` on PostgreSQL through a real subprocess: runs, listings, connection faults."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from ordo.store import migrate


def ordo(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)


def test_run_and_inspect_on_postgres(
    ordo_cmd: list[str], ordo_env: dict[str, str], postgres_url: str, tmp_path: Path
) -> None:
    flow = tmp_path / "pg.yaml"
    flow.write_text(
        textwrap.dedent("""
        id: pg
        tasks:
          - {id: a, type: shell, command: "echo n=2 >> $ORDO_OUTPUTS"}
          - {id: b, type: shell, command: "echo {{ outputs.a.n }}", depends_on: [a]}
    """)
    )
    env = {**ordo_env, "ORDO_DB": postgres_url}
    first = ordo(ordo_cmd, env, "run", str(flow))
    assert first.returncode == 0, first.stderr
    assert "execution 1 default/pg: SUCCESS" in first.stdout
    shown = json.loads(ordo(ordo_cmd, env, "executions", "show", "1", "--json").stdout)
    assert shown["task_runs"][0]["outputs"] == {"n": 2}
    logs = ordo(ordo_cmd, env, "logs", "1", "--task", "b")
    assert "b#1 stdout: 2" in logs.stdout
    upgraded = ordo(ordo_cmd, env, "db", "upgrade")
    assert upgraded.stdout.strip() == f"postgresql schema at version {migrate.LATEST['postgresql']}"


def test_unreachable_server_is_named_without_traceback(
    ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    result = ordo(
        ordo_cmd, ordo_env, "executions", "list", "--db", "postgresql://postgres@127.0.0.1:1/ordo"
    )
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at host 127.0.0.1 port 1 database ordo" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_database_is_named(
    ordo_cmd: list[str], ordo_env: dict[str, str], postgres_url: str
) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database_x"
    result = ordo(ordo_cmd, ordo_env, "executions", "list", "--db", missing)
    assert result.returncode == 1
    assert "database no_such_database_x" in result.stderr
    assert 'database "no_such_database_x" does not exist' in result.stderr
