"""The ``ordo executioner`` command driven as a user would: configs written into a
working dir, the real command run on one SQLite store."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from ordo.engine import open_store
from ordo.model import State


class Executioner:
    """Writes configs into a working dir and runs ``ordo executioner`` on one store."""

    def __init__(self, cmd: list[str], env: dict[str, str], folder: Path) -> None:
        self.cmd, self.env, self.folder = cmd, env, folder
        self.db = str(folder / "ordo.db")

    def config(self, jobs: list[dict[str, Any]], **top: Any) -> Path:
        path = self.folder / "jobs.json"
        doc = {"application_name": "app", "working_dir": str(self.folder), **top, "jobs": jobs}
        path.write_text(json.dumps(doc))
        return path

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.cmd, "executioner", *args, "--db", self.db],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )

    def run(
        self, jobs: list[dict[str, Any]], *args: str, **top: Any
    ) -> subprocess.CompletedProcess[str]:
        return self("-c", str(self.config(jobs, **top)), *args)

    def states(self, run_id: int) -> dict[str, tuple[State, int]]:
        store = open_store(self.db)
        try:
            return {r.task_id: (r.state, r.attempts) for r in store.task_runs(run_id)}
        finally:
            store.close()


def run_id(out: str) -> int:
    found = re.search(r"^Run ID: (\d+)", out, re.M)
    assert found, out
    return int(found.group(1))


def field(out: str, name: str) -> int:
    found = re.search(rf"^{name}: (\d+)$", out, re.M)
    assert found, out
    return int(found.group(1))


def stamp(name: str, seconds: float = 0) -> str:
    """A command writing its start and end times to ``<name>.t``."""
    return f"date +%s.%N > {name}.t; sleep {seconds}; date +%s.%N >> {name}.t"


def span(folder: Path, name: str) -> tuple[float, float]:
    start, end = (float(x) for x in (folder / f"{name}.t").read_text().split())
    return start, end
