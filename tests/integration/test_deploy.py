"""Revisions (history, show, diff, scripts in the hash), ``ordo deploy`` of a folder and
of a real git repository, labels, and replays of the newest revision; both backends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from server_support import run_ordo, server_env

FLOW = """\
id: report
namespace: analytics
labels: {team: data, tier: gold}
tasks:
  - id: check
    type: python
    function: checks:ok
  - id: load
    type: shell
    command: bash load.sh
    depends_on: [check]
"""
CHECKS = "def ok():\n    return {'ok': 1}\n"
LOAD = "echo loading\n"


class Ordo:
    def __init__(self, tmp_path: Path, db: str) -> None:
        self.env = server_env(tmp_path)
        self.db = db

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_ordo(self.env, "--db", self.db, *args)

    def json(self, *args: str) -> object:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_editing_a_referenced_script_makes_a_revision_shown_by_history_show_and_diff(
    tmp_path: Path, db: str
) -> None:
    ordo = Ordo(tmp_path, db)
    flows = tmp_path / "flows"
    write(flows, {"report.yaml": FLOW, "checks.py": CHECKS, "load.sh": LOAD})
    path = str(flows / "report.yaml")
    assert "revision 1 added" in ordo("flows", "add", path).stdout
    assert "revision 1 unchanged" in ordo("flows", "add", path).stdout
    (flows / "checks.py").write_text(CHECKS.replace("1", "2"))
    assert "revision 2 added" in ordo("flows", "add", path).stdout
    (flows / "load.sh").write_text("echo loading faster\n")
    done = ordo("run", path)
    assert done.returncode == 0, done.stderr
    history = ordo.json("flows", "history", "analytics/report")
    assert isinstance(history, list)
    assert [(r["revision"], r["executions"]) for r in history] == [(3, 1), (2, 0), (1, 0)]
    shown = ordo("flows", "show", "analytics/report", "--revision", "1")
    assert shown.returncode == 0 and "function: checks:ok" in shown.stdout
    assert "# --- checks.py" in shown.stdout and "return {'ok': 1}" in shown.stdout
    assert "# --- load.sh" in shown.stdout and "echo loading\n" in shown.stdout
    diff = ordo("flows", "diff", "analytics/report", "1", "3")
    assert "--- revision 1: checks.py" in diff.stdout
    assert "-    return {'ok': 1}" in diff.stdout and "+    return {'ok': 2}" in diff.stdout
    assert "+echo loading faster" in diff.stdout
    assert "--- revision 1\n" not in diff.stdout  # the flow file itself did not change
    (flows / "checks.py").write_text(CHECKS)
    (flows / "load.sh").write_text(LOAD)
    assert "revision 4 added" in ordo("flows", "add", path).stdout  # back: still a change
    missing = ordo("flows", "show", "analytics/report", "--revision", "9")
    assert missing.returncode == 2 and "flow analytics/report revision 9 not found" in (
        missing.stderr
    )
    unknown = ordo("flows", "history", "analytics/none")
    assert unknown.returncode == 2 and "flow analytics/none not found" in unknown.stderr


PACKAGE_META = "id: nightly-package\nnamespace: etl\n"
OTHER = """\
id: other
namespace: etl
tasks:
  - {id: a, type: shell, command: "true"}
"""
BROKEN = """\
id: other
namespace: etl
tasks:
  - {id: a, type: shel, command: "true"}
"""


def test_deploy_a_folder_dry_run_invalid_file_kept_and_deleted_file_deactivated(
    tmp_path: Path, db: str
) -> None:
    ordo = Ordo(tmp_path, db)
    site = tmp_path / "site"
    write(
        site,
        {
            "report.yaml": FLOW,
            "checks.py": CHECKS,
            "load.sh": LOAD,
            "etl/other.yaml": OTHER,
            "etl/pkg/flow.yaml": PACKAGE_META,
            "etl/pkg/10_run.sh": "echo run\n",
            "settings.yaml": "colour: blue\n",
        },
    )
    dry = ordo("deploy", str(site), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would deploy" in dry.stdout and "3 added" in dry.stdout
    assert "dry run: nothing stored" in dry.stdout
    assert ordo.json("flows", "list") == []
    done = ordo.json("deploy", str(site))
    assert isinstance(done, dict)
    kinds = {c["flow"]: (c["kind"], c["revision"]) for c in done["changes"]}
    assert kinds == {
        "analytics/report": ("added", 1),
        "etl/other": ("added", 1),
        "etl/nightly-package": ("added", 1),
    }
    assert done["ignored"] == ["settings.yaml"]
    again = ordo.json("deploy", str(site))
    assert isinstance(again, dict)
    assert {c["kind"] for c in again["changes"]} == {"unchanged"}

    (site / "etl/other.yaml").write_text(BROKEN)
    (site / "checks.py").write_text(CHECKS.replace("1", "3"))
    bad = ordo("deploy", str(site))
    assert bad.returncode == 1
    assert "etl/other.yaml:4:" in bad.stderr and "tasks[0].type" in bad.stderr
    assert "changed" in bad.stdout and "1 invalid" in bad.stdout
    listed = {f["id"]: f for f in ordo.json("flows", "list")}  # type: ignore[union-attr]
    assert listed["other"]["revision"] == 1 and listed["other"]["active"] is True
    assert listed["report"]["revision"] == 2

    (site / "etl/other.yaml").unlink()
    (site / "report.yaml").unlink()
    dry_gone = ordo("deploy", str(site), "--dry-run")
    assert "2 deactivated" in dry_gone.stdout
    gone = ordo.json("deploy", str(site))
    assert isinstance(gone, dict)
    assert sorted(c["flow"] for c in gone["changes"] if c["kind"] == "deactivated") == [
        "analytics/report",
        "etl/other",
    ]
    listed = {f["id"]: f for f in ordo.json("flows", "list")}  # type: ignore[union-attr]
    assert listed["other"]["active"] is False and listed["report"]["active"] is False
    assert listed["nightly-package"]["active"] is True
    history = ordo.json("flows", "history", "analytics/report")
    assert [r["revision"] for r in history] == [2, 1]  # type: ignore[union-attr]
    write(site, {"report.yaml": FLOW})
    back = ordo.json("deploy", str(site))
    assert isinstance(back, dict)
    assert ("reactivated", 2) in {(c["kind"], c["revision"]) for c in back["changes"]}
    listed = {f["id"]: f for f in ordo.json("flows", "list")}  # type: ignore[union-attr]
    assert listed["report"]["active"] is True and listed["other"]["active"] is False

    nowhere = ordo("deploy", str(tmp_path / "nowhere"))
    assert nowhere.returncode == 2 and "is not a folder" in nowhere.stderr


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_deploy_a_bare_git_repository_by_branch_tag_and_commit(tmp_path: Path, db: str) -> None:
    ordo = Ordo(tmp_path, db)
    bare = tmp_path / "flows.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "--quiet", str(work)], check=True)
    git(work, "checkout", "-q", "-b", "main")
    write(
        work, {"report.yaml": FLOW, "checks.py": CHECKS, "load.sh": LOAD, "etl/other.yaml": OTHER}
    )
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "v1")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "checks.py").write_text(CHECKS.replace("1", "5"))
    (work / "etl/other.yaml").unlink()
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "feature")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main", "feature", "v1")

    url = f"git+file://{bare}"
    done = ordo("deploy", f"{url}@main")
    assert done.returncode == 0, done.stderr
    assert f"deployed {url}@main {first}: 2 added" in done.stdout
    history = ordo.json("flows", "history", "analytics/report")
    assert history[0]["origin"] == f"{url}@main {first}"  # type: ignore[index]

    dry = ordo("deploy", f"{url}@feature", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 changed" in dry.stdout and "1 deactivated" in dry.stdout
    assert len(ordo.json("flows", "history", "analytics/report")) == 1  # type: ignore[arg-type]

    feature = ordo.json("deploy", f"{url}@feature")
    assert isinstance(feature, dict)
    assert {(c["flow"], c["kind"]) for c in feature["changes"]} == {
        ("analytics/report", "changed"),
        ("etl/other", "deactivated"),
    }
    tag = ordo.json("deploy", f"{url}@v1")
    assert isinstance(tag, dict)
    assert {(c["flow"], c["kind"]) for c in tag["changes"]} == {
        ("analytics/report", "changed"),
        ("etl/other", "reactivated"),
    }
    by_commit = ordo.json("deploy", f"{url}@{first[:10]}")
    assert isinstance(by_commit, dict)
    assert {c["kind"] for c in by_commit["changes"]} == {"unchanged"}
    revisions = ordo.json("flows", "history", "analytics/report")
    assert [r["revision"] for r in revisions] == [3, 2, 1]  # type: ignore[union-attr]
    ran = ordo("run", "--json", revisions[0]["path"])  # type: ignore[index]
    assert ran.returncode == 0, ran.stderr  # the checkout keeps the scripts it references

    unknown = ordo("deploy", f"{url}@no-such-branch")
    assert unknown.returncode == 2 and "no branch, tag or commit 'no-such-branch'" in (
        unknown.stderr
    )
    missing = ordo("deploy", f"git+file://{tmp_path}/missing.git@main")
    assert missing.returncode == 2 and "git fetch" in missing.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr


def test_labels_filter_lists_and_executions_inherit_and_add_labels(tmp_path: Path, db: str) -> None:
    ordo = Ordo(tmp_path, db)
    flows = tmp_path / "flows"
    write(flows, {"report.yaml": FLOW, "checks.py": CHECKS, "load.sh": LOAD, "other.yaml": OTHER})
    assert ordo("deploy", str(flows)).returncode == 0
    gold = ordo.json("flows", "list", "--label", "tier=gold")
    assert [f["id"] for f in gold] == ["report"]  # type: ignore[union-attr]
    assert ordo.json("flows", "list", "--label", "tier=silver") == []
    assert [f["id"] for f in ordo.json("flows", "list", "--namespace", "etl")] == ["other"]  # type: ignore[union-attr]
    assert (
        ordo("run", str(flows / "report.yaml"), "-l", "run=nightly", "-l", "tier=x").returncode == 0
    )
    assert ordo("run", str(flows / "report.yaml")).returncode == 0
    assert ordo("run", str(flows / "other.yaml")).returncode == 0
    every = ordo.json("executions", "list")
    assert isinstance(every, list) and len(every) == 3
    assert every[1]["labels"] == {"team": "data", "tier": "gold"}  # inherited
    assert every[2]["labels"] == {"team": "data", "tier": "x", "run": "nightly"}  # added
    data = ordo.json("executions", "list", "--label", "team=data")
    assert [e["id"] for e in data] == [2, 1]  # type: ignore[index]
    both = ordo.json("executions", "list", "--label", "team=data", "--label", "run=nightly")
    assert [e["id"] for e in both] == [1]  # type: ignore[index]
    assert ordo.json("executions", "list", "--label", "team=dat") == []
    bad = ordo("executions", "list", "--label", "team")
    assert bad.returncode == 2 and "--label expects KEY=VALUE" in bad.stderr


REPLAYED = """\
id: steps
tasks:
  - {id: a, type: shell, command: "echo a"}
  - {id: b, type: shell, command: "exit 1", depends_on: [a]}
"""


def test_replay_and_restart_choose_the_pinned_or_the_newest_revision(
    tmp_path: Path, db: str
) -> None:
    ordo = Ordo(tmp_path, db)
    path = tmp_path / "steps.yaml"
    path.write_text(REPLAYED)
    assert ordo("run", str(path)).returncode == 1
    path.write_text(REPLAYED.replace("exit 1", "echo fixed"))
    assert "revision 2 added" in ordo("flows", "add", str(path)).stdout
    pinned = ordo("replay", "1", "--from", "b", "--json")
    assert pinned.returncode == 1
    latest = ordo("replay", "1", "--from", "b", "--revision", "latest", "--json")
    assert latest.returncode == 0, latest.stdout
    doc = json.loads(latest.stdout)
    runs = {r["task"]: r for r in doc["task_runs"]}
    assert runs["a"]["attempts"][0]["reason"] == "replayed" and runs["b"]["state"] == "SUCCESS"
    again = ordo("restart", "1", "--revision", "pinned", "--json")
    assert again.returncode == 1
    assert ordo("restart", "1", "--revision", "latest", "--json").returncode == 0


def test_a_module_created_after_the_first_run_is_tracked_from_then_on(
    tmp_path: Path, db: str
) -> None:
    """The README's quickstart without checks.py: the first run fails (import, once),
    then checks.py is written; it enters the next revision, and edits to it make more."""
    env = server_env(tmp_path)
    (tmp_path / "flow.yaml").write_text(
        "id: quick\ntasks:\n  - {id: check, type: python, function: 'checks:length_ok'}\n"
    )

    def run() -> subprocess.CompletedProcess[str]:
        return run_ordo(env, "--db", db, "run", str(tmp_path / "flow.yaml"), "-q")

    def revisions() -> list[dict[str, object]]:
        shown = run_ordo(env, "--db", db, "flows", "history", "quick", "--json")
        found: list[dict[str, object]] = json.loads(shown.stdout)
        return found

    assert run().returncode == 1
    (tmp_path / "checks.py").write_text("def length_ok():\n    return {'n': 1}\n")
    assert run().returncode == 0
    assert [r["revision"] for r in revisions()] == [2, 1]
    shown = json.loads(run_ordo(env, "--db", db, "flows", "show", "quick", "--json").stdout)
    assert shown["scripts"] == {"checks.py": "def length_ok():\n    return {'n': 1}\n"}
    assert run().returncode == 0  # unchanged: no new revision
    assert len(revisions()) == 2
    (tmp_path / "checks.py").write_text("def length_ok():\n    return {'n': 2}\n")
    assert run().returncode == 0
    assert [r["revision"] for r in revisions()] == [3, 2, 1]
