"""Execution kinds: FLOW (a flow of tasks) and SCRIPT (a Python file that defines
``handler`` run directly), filtered in ``executions list``, the API and the UI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from support import ordo

SCRIPT = '''
"""Tidy the exports."""


def handler(system, this, inputs):
    this.log("tidying")
    return this.success("tidied", count=3)
'''


def test_a_handler_file_runs_as_a_script_and_kinds_filter(
    ordo_cmd: list[str], ordo_env: dict[str, str], db: str, tmp_path: Path
) -> None:
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(SCRIPT))
    flow = tmp_path / "flow.yaml"
    flow.write_text("id: plain\ntasks:\n  - {id: a, type: shell, command: 'true'}\n")
    checked = ordo(ordo_cmd, ordo_env, db, "validate", str(job))
    assert checked.returncode == 0, checked.stderr
    ran = ordo(ordo_cmd, ordo_env, db, "run", str(job), "-q")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "job   SUCCESS" in ran.stdout and "tidied" in ran.stdout
    assert ordo(ordo_cmd, ordo_env, db, "run", str(flow), "-q").returncode == 0
    doc = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "1", "--json").stdout)
    assert doc["kind"] == "SCRIPT" and doc["flow"] == "job"
    assert doc["task_runs"][0]["outputs"] == {"count": 3}
    scripts = ordo(ordo_cmd, ordo_env, db, "executions", "list", "--kind", "script", "--json")
    assert [e["id"] for e in json.loads(scripts.stdout)] == [1]
    flows = ordo(ordo_cmd, ordo_env, db, "executions", "list", "--kind", "flow", "--json")
    assert [e["id"] for e in json.loads(flows.stdout)] == [2]
    listed = ordo(ordo_cmd, ordo_env, db, "executions", "list")
    assert "script" in listed.stdout.splitlines()[-1]  # the MARKS column of execution 1
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    refused = ordo(ordo_cmd, ordo_env, db, "validate", str(empty))
    assert refused.returncode == 2
    assert "no @flow function in this file" in refused.stderr
    assert "no handler(system, this, inputs) to run as a script" in refused.stderr
