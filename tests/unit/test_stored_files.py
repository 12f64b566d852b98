"""The files of flows made in the browser are written out once per machine, into a
folder no other user can have prepared."""

from __future__ import annotations

import os
from pathlib import Path

from ordo.model import Flow, Task
from ordo.runners import stored


def test_a_stored_flow_gets_its_files_and_its_folder_in_env_values(tmp_path: Path) -> None:
    marker = "stored:abc123"
    task = Task(
        id="a", type="shell", spec={"command": "true"}, env={"ORDO_CONFIG": f"{marker}/config.json"}
    )
    flow = Flow(id="p", tasks=(task,), base_dir=marker)
    calls = []

    def files() -> dict[str, str | None]:
        calls.append(1)
        return {"config.json": "{}", "a.sh": "echo", "../escape": "no", "binary.bin": None}

    placed = stored.placed(flow, files, str(tmp_path))
    folder = Path(placed.base_dir)
    assert sorted(os.listdir(folder)) == ["a.sh", "binary.bin", "config.json"]
    assert placed.tasks[0].env["ORDO_CONFIG"] == str(folder / "config.json")
    stored.placed(flow, files, str(tmp_path))
    assert len(calls) == 1  # written once


def test_a_shared_folder_others_can_write_to_is_not_used(tmp_path: Path) -> None:
    shared = tmp_path / f"ordo-stored-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    folder = stored.folder_for("abc", str(tmp_path))
    assert not folder.startswith(str(shared))
