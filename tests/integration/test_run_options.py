"""Run with options: retry (attempts, delay, backoff), timeout and notification targets
for one execution only, from ``ordo run`` flags, the API's start body and the remote
CLI; the starter's token scope recorded and applied to the children its handlers start.
Real ``ordo`` processes, a real server and a real webhook receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import run_ordo, running_server, server_env, webhook_receiver
from support import ordo, patient

FLAKY = """\
id: flaky
tasks:
  - id: count
    type: shell
    command: |
      n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}
      test $n -ge 3
"""
SLOW = """\
id: slow
tasks:
  - {id: nap, type: shell, command: "sleep 60"}
"""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


def test_ordo_run_retries_and_times_out_this_run_only(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    db = str(tmp_path / "ordo.db")
    flow = tmp_path / "flaky.yaml"
    flow.write_text(FLAKY.replace("{counter}", str(tmp_path / "n")))
    plain = ordo(ordo_cmd, ordo_env, db, "run", str(flow), "-q")
    assert plain.returncode == 1  # the flow's own retry: one attempt
    retried = ordo(
        ordo_cmd,
        ordo_env,
        db,
        "run",
        str(flow),
        "-q",
        "--retry",
        "3",
        "--retry-delay",
        "0s",
        "--retry-backoff",
        "1",
    )
    assert retried.returncode == 0, retried.stdout + retried.stderr
    shown = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "2", "--json").stdout)
    assert [len(r["attempts"]) for r in shown["task_runs"]] == [2]  # 2nd and 3rd count
    assert shown["options"] == {"retry": {"attempts": 3, "delay": 0.0, "backoff": 1.0}}
    text = ordo(ordo_cmd, ordo_env, db, "executions", "show", "2").stdout
    assert 'run options: {"retry": {"attempts": 3, "delay": 0.0, "backoff": 1.0}}' in text
    again = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "1", "--json").stdout)
    assert again["options"] is None

    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW)
    timed = ordo(ordo_cmd, ordo_env, db, "run", str(slow), "-q", "--timeout", "1s")
    assert timed.returncode == 1
    assert "execution 3 default/slow: FAILED" in timed.stdout
    shown = json.loads(ordo(ordo_cmd, ordo_env, db, "executions", "show", "3", "--json").stdout)
    assert shown["reason"] == "execution timed out" and shown["options"] == {"timeout": 1.0}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--timeout", "soon"], "run options: timeout: "),
        (["--retry", "0"], "run options: retry.attempts: expected"),
        (["--retry-delay=-3s"], "run options: retry.delay: "),
        (["--notify", "nobody"], "--notify 'nobody': expected [STATES:]TARGET"),
        (["--notify", "failed:ftp://x"], "--notify 'failed:ftp://x': expected"),
    ],
)
def test_wrong_run_options_are_refused_before_anything_runs(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path, flags: list[str], message: str
) -> None:
    db = str(tmp_path / "ordo.db")
    flow = tmp_path / "slow.yaml"
    flow.write_text(SLOW)
    refused = ordo(ordo_cmd, ordo_env, db, "run", str(flow), *flags)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert message in refused.stderr and "Traceback" not in refused.stderr
    listed = ordo(ordo_cmd, ordo_env, db, "executions", "list", "--json")
    assert json.loads(listed.stdout) == []


CHILD = """\
id: child
namespace: finance
tasks:
  - {id: a, type: shell, command: "echo child"}
"""
PARENT = """\
id: parent
namespace: analytics
tasks:
  - {id: call, type: python, handler: "calls:handler"}
"""
CALLS = """\
def handler(system, this, inputs):
    try:
        this.flow("child", init={"project_id": system.project("finance")["id"]})
    except this.OrdoCallError as exc:
        return this.fail(str(exc))
    return this.success("the child ran")
"""


def test_the_api_and_the_remote_cli_run_with_options_and_record_the_scope(
    tmp_path: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, posts = receiver
    site = tmp_path / "site"
    site.mkdir()
    (site / "calls.py").write_text(CALLS)
    (site / "parent.yaml").write_text(PARENT)
    (site / "child.yaml").write_text(CHILD)
    (site / "flaky.yaml").write_text(FLAKY.replace("{counter}", str(tmp_path / "n")))
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    with running_server(db, env, tmp_path, "--workers", "2", "--flows", str(site)) as s:
        body = {
            "retry": {"attempts": 2, "delay": "0s"},
            "timeout": "10m",
            "notify": [{"on": ["failed"], "webhook": f"{hook}/run"}],
        }
        started = s.http.post("/api/flows/default/flaky/executions", json=body)
        assert started.status_code == 201, started.text
        doc = s.wait_state(started.json()["id"], "FAILED")  # 2 attempts of the 3 it needs
        assert [len(r["attempts"]) for r in doc["task_runs"]] == [2]
        assert doc["options"] == {
            "retry": {"attempts": 2, "delay": 0.0},
            "timeout": 600.0,
            "notify": [{"on": ["failed"], "email": [], "webhook": f"{hook}/run"}],
        }
        deadline = time.monotonic() + patient(30)
        while not posts:
            assert time.monotonic() < deadline, "no notification for the run's own target"
            time.sleep(0.05)
        assert posts[0]["id"] == doc["id"] and posts[0]["state"] == "FAILED"

        bad = s.http.post(
            "/api/flows/default/flaky/executions",
            json={"timeout": "soon", "retry": {"tries": 2}, "notify": [{"on": "failed"}]},
        )
        assert bad.status_code == 422
        detail = bad.json()["detail"]
        assert "timeout: " in detail and "retry.tries: unknown key 'tries'" in detail
        assert "notify[0]: give email or webhook (or both)" in detail

        remote = run_ordo(
            {**env, "ORDO_SERVER": s.url, "ORDO_TOKEN": s.token},
            "run",
            str(site / "flaky.yaml"),
            "--retry",
            "2",
            "--timeout",
            "5m",
        )
        assert remote.returncode == 0, remote.stdout + remote.stderr  # the 3rd try passes
        last = s.http.get("/api/executions", params={"flow": "default/flaky"}).json()
        assert last["items"][0]["options"] == {"retry": {"attempts": 2}, "timeout": 300.0}

        made = s.cli("tokens", "create", "--name", "ana", "--namespace", "analytics")
        ana = httpx.Client(
            base_url=s.url, headers={"Authorization": f"Bearer {made.stdout.strip()}"}, timeout=30
        )
        with ana:
            mine = ana.post("/api/flows/analytics/parent/executions", json={})
            assert mine.status_code == 201, mine.text
            assert mine.json()["scope"] == ["analytics"]
            doc = s.wait_state(mine.json()["id"], "FAILED")
            assert doc["task_runs"][0]["reason"] == (
                "namespace 'finance' is outside this execution's scope: it was started with "
                "a token limited to namespaces analytics"
            )
        doc = s.wait_state(
            s.http.post("/api/flows/analytics/parent/executions").json()["id"], "SUCCESS"
        )
        assert doc["scope"] is None and doc["task_runs"][0]["reason"] == "the child ran"
