"""The ``ordo`` command leaves without tearing the interpreter down (:func:`console`):
what an exit must do is still done. Its output is whole (through a pipe too), its exit
code is the command's, the ``atexit`` functions ran (the attempts' temporary folder is
removed) and its rows are stored."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

FLOW = """\
id: exits
tasks:
  - {id: first, type: python, function: 'exits_mod:talk'}
  - {id: second, type: python, function: 'exits_mod:fail', depends_on: [first]}
"""
MODULE = """\
def talk():
    print("x" * 100_000)
    return {"big": "y" * 200_000}

def fail():
    raise RuntimeError("as planned")
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "exits_mod.py").write_text(MODULE)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch)}
    return subprocess.run(
        [sys.executable, "-m", "ordo.cli.main", "run", "flow.yaml", "--db", "o.db", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_that_fails_exits_1_with_its_whole_summary_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    done = _run(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "second  FAILED" in done.stdout
    assert "default/exits: FAILED in" in done.stdout.splitlines()[-1]
    assert list((tmp_path / "scratch").iterdir()) == []  # the atexit cleanup ran
    with sqlite3.connect(tmp_path / "o.db") as db:
        states = dict(db.execute("SELECT task_id, state FROM task_runs"))
    assert states == {"first": "SUCCESS", "second": "FAILED"}


def test_a_long_json_document_reaches_the_end_of_a_pipe(tmp_path: Path) -> None:
    done = _run(tmp_path, "--json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)  # whole: the last byte was flushed
    assert document["state"] == "FAILED"
    assert "y" * 200_000 in done.stdout
