"""A deployed folder (or repository) that tries to read what it should not: symbolic
links out of the folder, a FIFO, a link to /dev/zero, oversized files; and a git ref that
tries to be an option. Each bad file is reported and the rest is deployed; nothing
outside is stored; no traceback; the git command is never run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ordo.cli.main import main
from ordo.engine import open_store

GOOD = "id: good\ntasks:\n  - {id: t, type: shell, command: echo ok}\n"
SECRET = "the-master-key-do-not-publish\n"
LEAK = "id: leak\ntasks:\n  - {{id: t, type: shell, command: {command}}}\n"


def deploy(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["deploy", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORDO_SERVER", raising=False)
    monkeypatch.delenv("ORDO_DB", raising=False)
    return tmp_path


def stored_text(db: str) -> str:
    """Everything the store holds about flows: definitions, sources, scripts."""
    store = open_store(db)
    try:
        texts = []
        for namespace, flow_id, *_ in store.deployed_flows(os.path.dirname(db) + "/flows"):
            found = store.find_flow(namespace, flow_id, None)
            assert found is not None
            texts.append(json.dumps(found.flow.to_dict()))
            texts.append(store.revision_source(found.id) or "")
            texts.append(json.dumps(store.revision_scripts(found.id)))
        return "\n".join(texts)
    finally:
        store.close()


def test_links_out_of_the_folder_fifos_devices_and_big_files_are_reported_and_the_rest_deployed(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = env / "secret.key"
    secret.write_text(SECRET)
    flows = env / "flows"
    flows.mkdir()
    (flows / "good.yaml").write_text(GOOD)
    # a referenced module that is a link to the secret
    (flows / "leak.yaml").write_text(
        "id: leak\ntasks:\n  - {id: t, type: python, function: 'k:run'}\n"
    )
    (flows / "k.py").symlink_to(secret)
    # a flow file that is a link out of the folder, one to /dev/zero, a FIFO
    outside = env / "elsewhere.yaml"
    outside.write_text("id: outside\ntasks:\n  - {id: t, type: shell, command: echo}\n")
    (flows / "out.yaml").symlink_to(outside)
    (flows / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(flows / "pipe.yaml")
    # a referenced script over the configured limit
    (flows / "big.yaml").write_text(
        "id: big\ntasks:\n  - {id: t, type: shell, command: bash big.sh}\n"
    )
    (flows / "big.sh").write_text("echo " + "x" * 5000 + "\n")
    monkeypatch.setenv("ORDO_DEPLOY_MAX_FILE", "4096")
    db = str(env / "ordo.db")

    code, out, err = deploy(capsys, "--db", db, str(flows), "--json")

    assert code == 1, err
    report = json.loads(out)
    kinds = {c["path"]: c["kind"] for c in report["changes"]}
    assert kinds["good.yaml"] == "added"
    for name in ("leak.yaml", "out.yaml", "zero.yaml", "pipe.yaml", "big.yaml"):
        assert kinds[name] == "invalid", (name, report)
    errors = {c["path"]: " ".join(c["errors"]) for c in report["changes"]}
    assert f"k.py: a symbolic link to {secret}, outside the folder" in errors["leak.yaml"]
    assert f"a symbolic link to {outside}, outside the folder" in errors["out.yaml"]
    assert "a symbolic link to /dev/zero, outside the folder" in errors["zero.yaml"]
    assert "not a regular file (a FIFO)" in errors["pipe.yaml"]
    assert (
        "big.sh: referenced file not read: 5006 bytes, over the limit of 4096"
        in (errors["big.yaml"])
    )
    assert "Traceback" not in out + err
    assert SECRET.strip() not in stored_text(db)


def test_flows_add_refuses_a_referenced_link_out_of_the_folder(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = env / "secret.key"
    secret.write_text(SECRET)
    flows = env / "flows"
    flows.mkdir()
    (flows / "leak.yaml").write_text(
        "id: leak\ntasks:\n  - {id: t, type: shell, command: ./k.sh}\n"
    )
    (flows / "k.sh").symlink_to(secret)
    db = str(env / "ordo.db")

    code = main(["--db", db, "flows", "add", str(flows / "leak.yaml")])
    out, err = capsys.readouterr()

    assert code == 2
    assert f"k.sh: a symbolic link to {secret}, outside the folder" in err
    assert "Traceback" not in out + err


def test_validate_reads_a_device_it_is_given_only_up_to_the_limit(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "zero.yaml").symlink_to("/dev/zero")

    code = main(["validate", str(env / "zero.yaml")])
    _, err = capsys.readouterr()

    assert code == 2
    assert "zero.yaml: cannot read flow file: over the limit of 8388608 bytes" in err


def test_a_link_inside_the_folder_is_deployed(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = env / "flows"
    (flows / "lib").mkdir(parents=True)
    (flows / "lib" / "steps.py").write_text("def run():\n    return {}\n")
    (flows / "steps.py").symlink_to(flows / "lib" / "steps.py")
    (flows / "f.yaml").write_text(
        "id: f\ntasks:\n  - {id: t, type: python, function: 'steps:run'}\n"
    )

    code, out, err = deploy(capsys, "--db", str(env / "ordo.db"), str(flows))

    assert code == 0, out + err
    assert "added" in out


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_git_ref_or_url_that_looks_like_an_option_is_refused_and_runs_nothing(
    env: Path, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    repo = env / "repo"
    repo.mkdir()
    (repo / "good.yaml").write_text(GOOD)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)
    pwned = env / "pwned"
    extra = ["--dry-run"] if dry_run else []
    db = str(env / "ordo.db")

    for target in (
        f"git+file://{repo}@--upload-pack=touch {pwned}",
        f"git+--upload-pack=touch {pwned}@main",
    ):
        code, out, err = deploy(capsys, "--db", db, target, *extra)
        assert code == 2, out + err
        assert "cannot start with '-'" in err
        assert "Traceback" not in err
    assert not pwned.exists()
    code, out, err = deploy(capsys, "--db", db, f"git+file://{repo}", *extra)
    assert code == 0, out + err
    assert "good.yaml" in out


def test_a_symlink_committed_in_a_repository_is_not_published(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = env / "secret.key"
    secret.write_text(SECRET)
    repo = env / "repo"
    repo.mkdir()
    (repo / "leak.yaml").write_text(
        "id: leak\ntasks:\n  - {id: t, type: shell, command: bash k.sh}\n"
    )
    (repo / "k.sh").symlink_to(secret)
    (repo / "good.yaml").write_text(GOOD)
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)

    code, out, _ = deploy(capsys, "--db", str(env / "ordo.db"), f"git+file://{repo}", "--json")

    assert code == 1
    changes = {c["path"]: c for c in json.loads(out)["changes"]}
    assert changes["good.yaml"]["kind"] == "added"
    assert changes["leak.yaml"]["kind"] == "invalid"
    assert f"a symbolic link to {secret}" in " ".join(changes["leak.yaml"]["errors"])
