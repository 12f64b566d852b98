"""Composition through the ``ordo`` command: packages, ``flows add``, ``connections``,
``executions show`` with children and outputs."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest


def ordo(cmd: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def package(tmp_path: Path) -> Path:
    folder = tmp_path / "nightly"
    folder.mkdir()
    db = tmp_path / "data.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (step TEXT)")
    conn.commit()
    conn.close()
    write(folder / "config.json", '{"region": "eu", "limit": 3}')
    write(folder / "flow.yaml", "id: nightly\nnamespace: ops\nconnection: warehouse\n")
    write(
        folder / "10_extract.py",
        """
        import json, os
        config = json.load(open(os.environ["ORDO_CONFIG"]))
        print("extracting", config["region"])
        """,
    )
    write(
        folder / "20_load.py",
        """
        def handler(system, this, inputs):
            this.output("limit", inputs["config"]["limit"])
            return this.success("loaded")
        """,
    )
    write(folder / "30_record.sql", "INSERT INTO runs VALUES ('nightly');")
    write(folder / "40_report.sh", 'echo "report for $(basename "$PWD")"\n')
    write(folder / "50_notes.txt", "not a script\n")
    return folder


def test_a_package_folder_runs_its_scripts_in_name_order(
    ordo_cmd: list[str], ordo_env: dict[str, str], package: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    added = ordo(
        ordo_cmd, ordo_env, "connections", "add", "warehouse", "--type", "sql", "--url", url
    )
    assert added.returncode == 0, added.stderr
    result = ordo(ordo_cmd, ordo_env, "run", str(package), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["namespace"] == "ops" and doc["flow"] == "nightly"
    runs = {r["task"]: r for r in doc["task_runs"]}
    assert list(runs) == [
        "10_extract.py",
        "20_load.py",
        "30_record.sql",
        "40_report.sh",
        "50_notes.txt",
    ]
    assert [r["state"] for r in runs.values()] == ["SUCCESS"] * 4 + ["SKIPPED"]
    assert runs["50_notes.txt"]["reason"] == "no handler for .txt"
    assert runs["20_load.py"]["outputs"] == {"limit": 3}
    assert doc["state"] == "SUCCESS"
    rows = sqlite3.connect(tmp_path / "data.db").execute("SELECT step FROM runs").fetchall()
    assert rows == [("nightly",)]
    logs = ordo(ordo_cmd, ordo_env, "logs", str(doc["id"]))
    assert "extracting eu" in logs.stdout and "report for nightly" in logs.stdout


def test_package_problems_are_named(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    write(folder / "a.sql", "SELECT 1;")
    write(folder / "config.json", "{not json")
    write(folder / "flow.yaml", "id: broken\nretries: 3\n")
    result = ordo(ordo_cmd, ordo_env, "run", str(folder))
    assert result.returncode == 2
    assert f"{folder}/flow.yaml:2:1: retries: unknown key 'retries'" in result.stderr
    assert f"{folder}/config.json:1:2: invalid JSON" in result.stderr
    assert "a package with .sql scripts needs their connection" in result.stderr
    assert "Traceback" not in result.stderr


def test_flows_add_then_a_parent_runs_its_child(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    child = write(
        tmp_path / "child.yaml",
        """
        id: child
        namespace: etl
        inputs:
          n: {type: int, required: true}
        outputs:
          square: "{{ outputs.calc.value }}"
        tasks:
          - id: calc
            type: shell
            command: echo "value=$(( {{ inputs.n }} * {{ inputs.n }} ))" >> "$ORDO_OUTPUTS"
        """,
    )
    parent = write(
        tmp_path / "parent.yaml",
        """
        id: parent
        outputs:
          squares: "{{ outputs.each | map(attribute='square') | list }}"
        tasks:
          - id: each
            type: flow
            flow: etl/child
            for_each: [2, 3]
            with: {n: "{{ fork.value }}"}
        """,
    )
    missing = ordo(ordo_cmd, ordo_env, "run", str(parent))
    assert missing.returncode == 2
    assert "task 'each': unknown flow 'etl/child'" in missing.stderr
    assert "ordo flows add FILE" in missing.stderr
    added = ordo(ordo_cmd, ordo_env, "flows", "add", str(child))
    assert added.stdout.strip() == "etl/child revision 1 added"
    again = ordo(ordo_cmd, ordo_env, "flows", "add", str(child))
    assert again.stdout.strip() == "etl/child revision 1 unchanged"
    result = ordo(ordo_cmd, ordo_env, "run", str(parent))
    assert result.returncode == 0, result.stdout + result.stderr
    shown = ordo(ordo_cmd, ordo_env, "executions", "show", "1")  # the failed run made none
    assert "child executions:" in shown.stdout
    assert "etl/child  SUCCESS" in shown.stdout
    assert "squares = [4, 9]" in shown.stdout
    child_doc = json.loads(ordo(ordo_cmd, ordo_env, "executions", "show", "2", "--json").stdout)
    assert child_doc["parent_id"] == 1 and child_doc["outputs"] == {"square": 4}


def test_connections_commands_mask_credentials(
    ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    url = "postgresql://app:hunter2@db.example:5432/sales"
    added = ordo(ordo_cmd, ordo_env, "connections", "add", "sales", "--type", "sql", "--url", url)
    assert added.returncode == 0, added.stderr
    assert "hunter2" not in added.stdout and "app:****@db.example" in added.stdout
    api = ordo(
        ordo_cmd,
        ordo_env,
        "connections",
        "add",
        "api",
        "--type",
        "http",
        "--base-url",
        "https://api.example",
        "--header",
        "Authorization: Bearer tok-123",
    )
    assert api.returncode == 0, api.stderr
    listed = ordo(ordo_cmd, ordo_env, "connections", "list")
    shown = ordo(ordo_cmd, ordo_env, "connections", "show", "api", "--json")
    for out in (listed.stdout, shown.stdout):
        assert "hunter2" not in out and "tok-123" not in out
    assert json.loads(shown.stdout)["config"]["headers"] == {"Authorization": "****"}
    twice = ordo(ordo_cmd, ordo_env, "connections", "add", "api", "--type", "sql", "--url", url)
    assert twice.returncode == 2 and "connection 'api' exists" in twice.stderr
    bad = ordo(ordo_cmd, ordo_env, "connections", "add", "x", "--type", "http", "--url", url)
    assert bad.returncode == 2 and "--base-url" in bad.stderr
    removed = ordo(ordo_cmd, ordo_env, "connections", "remove", "api")
    assert removed.returncode == 0
    gone = ordo(ordo_cmd, ordo_env, "connections", "show", "api")
    assert gone.returncode == 2
    assert "unknown connection 'api' (connections: sales)" in gone.stderr


EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_composition_examples_run(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    for name in ("flow-of-flows", "handler", "package"):
        shutil.copytree(
            EXAMPLES / name,
            tmp_path / name,
            ignore=shutil.ignore_patterns("*.db", "out", "__pycache__"),
        )
    steps = [
        ("flows", "add", str(tmp_path / "flow-of-flows" / "region-report.yaml")),
        ("flows", "add", str(tmp_path / "handler" / "tally.yaml")),
        ("connections", "add", "example-db", "--type", "sql", "--url", "sqlite:///example.db"),
        ("connections", "add", "package-db", "--type", "sql", "--url", "sqlite:///out/package.db"),
    ]
    for step in steps:
        done = ordo(ordo_cmd, ordo_env, *step)
        assert done.returncode == 0, done.stderr
    regions = ordo(ordo_cmd, ordo_env, "run", str(tmp_path / "flow-of-flows" / "regions.yaml"))
    assert regions.returncode == 0, regions.stdout + regions.stderr
    doc = json.loads(ordo(ordo_cmd, ordo_env, "executions", "show", "1", "--json").stdout)
    assert doc["outputs"] == {"grand_total": 297} and len(doc["children"]) == 3
    quiet = ordo(
        ordo_cmd,
        ordo_env,
        "run",
        str(tmp_path / "flow-of-flows" / "regions.yaml"),
        "-i",
        "publish=false",
    )
    assert "publishing turned off" in quiet.stdout
    handler = ordo(ordo_cmd, ordo_env, "run", str(tmp_path / "handler" / "orchestrate.yaml"))
    assert handler.returncode == 0, handler.stdout + handler.stderr
    listed = ordo(ordo_cmd, ordo_env, "executions", "list", "--flow", "orchestrate", "--json")
    last = json.loads(listed.stdout)[0]
    shown = json.loads(
        ordo(ordo_cmd, ordo_env, "executions", "show", str(last["id"]), "--json").stdout
    )
    run = next(r for r in shown["task_runs"] if r["task"] == "run")
    assert run["outputs"]["grand_total"] == 36
    assert len(shown["children"]) == 2
    assert len(shown["calls"]) == 3  # one CONNECTION execution per this.connect call
    package = ordo(ordo_cmd, ordo_env, "run", str(tmp_path / "package"))
    assert package.returncode == 0, package.stdout + package.stderr
    assert "no handler for .md" in package.stdout
