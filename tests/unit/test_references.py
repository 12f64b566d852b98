"""The files a flow references inside its folder, the revision hash over them, and how
``git+URL@REF`` targets are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordo import definitions
from ordo.deploy import parse_git_target
from ordo.errors import UsageError

FLOW = """\
id: refs
tasks:
  - {id: f, type: python, function: "steps.load:run"}
  - {id: s, type: python, script: scripts/clean.py}
  - {id: q, type: sql, url: "sqlite:///x.db", script: load.sql}
  - {id: i, type: sql, url: "sqlite:///x.db", script: "select 1;"}
  - {id: b, type: shell, command: "bash run.sh --fast && cat data.csv"}
  - {id: o, type: shell, command: "bash ../outside.sh"}
  - {id: t, type: python, function: "builtins:dict"}
"""


def test_a_flow_references_its_scripts_modules_and_shell_scripts_inside_its_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "__init__.py").write_text("")
    (tmp_path / "steps" / "load.py").write_text("def run(): pass\n")
    (tmp_path / "run.sh").write_text("echo\n")
    (tmp_path / "data.csv").write_text("a,b\n")
    path = tmp_path / "refs.yaml"
    path.write_text(FLOW)
    flow = definitions.load_flow_file(path)
    assert definitions.referenced_files(flow) == [
        "load.sql",  # named by the flow: counts even while missing
        "run.sh",
        "scripts/clean.py",
        "steps/__init__.py",
        "steps/load.py",
    ]
    before = definitions.prepare(path)
    assert before.scripts["load.sql"] is None and before.scripts["run.sh"] == "echo\n"
    (tmp_path / "data.csv").write_text("changed\n")  # data is not a script
    assert definitions.prepare(path).content_hash == before.content_hash
    (tmp_path / "load.sql").write_text("select 2;\n")
    assert definitions.prepare(path).content_hash != before.content_hash


def test_a_flow_without_references_hashes_as_its_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("id: plain\ntasks:\n  - {id: a, type: shell, command: 'true'}\n")
    assert definitions.prepare(path).content_hash == definitions.content_hash(path.read_bytes())


@pytest.mark.parametrize(
    ("text", "url", "ref"),
    [
        ("git+file:///srv/flows.git@v1", "file:///srv/flows.git", "v1"),
        ("git+file:///srv/flows.git", "file:///srv/flows.git", None),
        ("git+https://u@host/flows.git@feature/x", "https://u@host/flows.git", "feature/x"),
        ("git+https://u@host/flows.git", "https://u@host/flows.git", None),
        ("git+git@host:org/flows.git", "git@host:org/flows.git", None),
        ("git+git@host:org/flows.git@main", "git@host:org/flows.git", "main"),
    ],
)
def test_git_targets_split_url_and_ref_at_the_last_at(text: str, url: str, ref: str | None) -> None:
    target = parse_git_target(text)
    assert (target.url, target.ref) == (url, ref)


def test_a_git_target_without_url_or_ref_after_the_at_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="nothing after @"):
        parse_git_target("git+file:///srv/flows.git@")
    with pytest.raises(UsageError, match="no repository URL"):
        parse_git_target("git+@main")
