"""``ordo server --flows DIR --watch`` reloading edited, broken and deleted files while it
runs; tokens limited to namespaces; the revision routes and label filters of the API."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from server_support import Server, running_server, server_env
from support import patient

ANALYTICS = """\
id: report
namespace: analytics
labels: {team: data}
triggers:
  - {type: event, event: day.closed}
tasks:
  - {id: a, type: shell, command: "echo one"}
"""
FINANCE = """\
id: ledger
namespace: finance
labels: {team: money}
triggers:
  - {type: event, event: day.closed}
tasks:
  - {id: a, type: shell, command: "echo ledger"}
"""


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + patient(timeout)
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        time.sleep(0.1)


def test_the_server_watching_a_folder_reloads_edited_broken_and_deleted_files(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "report.yaml").write_text(ANALYTICS)
    (site / "ledger.yaml").write_text(FINANCE)
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    with running_server(db, env, tmp_path, "--no-workers", "--flows", str(site), "--watch") as s:
        flow = s.http.get("/api/flows/analytics/report").json()
        assert flow["revision"] == 1  # deployed before the API answered

        (site / "report.yaml").write_text(ANALYTICS.replace("echo one", "echo two"))
        changed = eventually(
            lambda: s.http.get("/api/flows/analytics/report").json()["revision"] == 2,
            "revision 2 after an edit",
        )
        assert changed
        source = s.http.get("/api/flows/analytics/report/revisions/2").json()["source"]
        assert "echo two" in source

        (site / "report.yaml").write_text(ANALYTICS.replace("type: shell", "type: shel"))
        eventually(lambda: "is invalid" in s.log.read_text(), "the invalid file in the log")
        log = s.log.read_text()
        assert "report.yaml is invalid; analytics/report keeps its previous revision" in log
        assert "report.yaml:7:" in log and "tasks[0].type" in log
        flow = s.http.get("/api/flows/analytics/report").json()
        assert flow["revision"] == 2 and flow["active"] is True

        (site / "ledger.yaml").unlink()
        eventually(
            lambda: s.http.get("/api/flows/finance/ledger").json()["active"] is False,
            "the deleted file's flow inactive",
        )
        revisions = s.http.get("/api/flows/finance/ledger/revisions").json()
        assert [r["revision"] for r in revisions] == [1]  # its history stays


def test_tokens_limited_to_a_namespace_neither_see_nor_run_other_namespaces(
    tmp_path: Path,
) -> None:
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    with running_server(db, env, tmp_path, "--workers", "1") as s:
        s.add_flow(ANALYTICS)
        s.add_flow(FINANCE)
        made = s.cli("tokens", "create", "--name", "ana", "--namespace", "analytics")
        assert made.returncode == 0 and "for namespaces analytics" in made.stderr
        listed = s.cli("tokens", "list")
        assert "analytics" in listed.stdout
        ana = httpx.Client(
            base_url=s.url, headers={"Authorization": f"Bearer {made.stdout.strip()}"}, timeout=30
        )
        with ana:
            _check_isolation(s, ana)


def _check_isolation(s: Server, ana: httpx.Client) -> None:
    assert [f["id"] for f in ana.get("/api/flows").json()] == ["report"]
    assert [f["id"] for f in s.http.get("/api/flows").json()] == ["report", "ledger"]
    for path in (
        "/api/flows/finance/ledger",
        "/api/flows/finance/ledger/revisions",
        "/api/flows/finance/ledger/revisions/1",
        "/api/flows/finance/ledger/next",
    ):
        hidden = ana.get(path)
        assert hidden.status_code == 404, path
        assert hidden.json()["detail"] == "flow finance/ledger not found"
    assert ana.post("/api/flows/finance/ledger/executions", json={}).status_code == 404
    assert ana.post("/api/flows/finance/ledger/deactivate").status_code == 404
    sent = ana.post("/api/flows", content=FINANCE, headers={"Content-Type": "application/x-yaml"})
    assert sent.status_code == 403 and "limited to namespaces analytics" in sent.json()["detail"]
    put = ana.put(
        "/api/flows/finance/ledger", content=FINANCE, headers={"Content-Type": "application/x-yaml"}
    )
    assert put.status_code == 403

    mine = ana.post("/api/flows/analytics/report/executions", json={"labels": {"run": "x"}})
    assert mine.status_code == 201, mine.text
    theirs = s.http.post("/api/flows/finance/ledger/executions", json={}).json()
    s.wait_state(mine.json()["id"], "SUCCESS")
    s.wait_state(theirs["id"], "SUCCESS")
    items = ana.get("/api/executions").json()["items"]
    assert {e["namespace"] for e in items} == {"analytics"}
    assert ana.get("/api/executions", params={"namespace": "finance"}).json()["items"] == []
    for path in ("", "/task-runs", "/attempts", "/outputs", "/metrics", "/logs"):
        hidden = ana.get(f"/api/executions/{theirs['id']}{path}")
        assert hidden.status_code == 404 and hidden.json()["detail"] == (
            f"execution {theirs['id']} not found"
        )
    for verb, body in (("kill", None), ("restart", {}), ("replay", {"from": "a"})):
        refused = ana.post(f"/api/executions/{theirs['id']}/{verb}", json=body)
        assert refused.status_code == 404, verb

    event = ana.post("/api/events/day.closed", json={})
    assert event.status_code == 202
    started = event.json()["executions"]
    assert len(started) == 1
    by_event = s.http.get(f"/api/executions/{started[0]}").json()
    assert by_event["namespace"] == "analytics" and by_event["scope"] == ["analytics"]
    assert len(s.http.post("/api/events/day.closed", json={}).json()["executions"]) == 2
    assert ana.get("/api/events").status_code == 403
    put_conn = ana.put("/api/connections/db", json={"type": "sql", "url": "sqlite:///x.db"})
    assert put_conn.status_code == 403

    labelled = s.http.get("/api/executions", params={"label": ["team=data", "run=x"]}).json()
    assert [e["id"] for e in labelled["items"]] == [mine.json()["id"]]
    money = s.http.get("/api/flows", params={"label": "team=money"}).json()
    assert [f["id"] for f in money] == ["ledger"]
    bad = s.http.get("/api/executions", params={"label": "team"})
    assert bad.status_code == 422 and "KEY=VALUE" in bad.json()["detail"]


def test_revision_routes_and_the_remote_cli_show_history_and_diffs(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    db = str(tmp_path / "ordo.db")
    with running_server(db, env, tmp_path, "--no-workers") as s:
        s.add_flow(ANALYTICS)
        s.add_flow(ANALYTICS.replace("echo one", "echo two"))
        revisions = s.http.get("/api/flows/analytics/report/revisions").json()
        assert [r["revision"] for r in revisions] == [2, 1]
        first = s.http.get("/api/flows/analytics/report/revisions/1").json()
        assert "echo one" in first["source"] and first["executions"] == 0
        diff = s.http.get("/api/flows/analytics/report/diff", params={"from": 1, "to": 2})
        assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/plain")
        assert '-  - {id: a, type: shell, command: "echo one"}' in diff.text
        assert '+  - {id: a, type: shell, command: "echo two"}' in diff.text
        assert s.http.get("/api/flows/analytics/report/revisions/7").status_code == 404
        remote = ["--server", s.url, "--token", s.token]
        history = s.cli(*remote, "flows", "history", "analytics/report")
        assert history.returncode == 0 and history.stdout.splitlines()[1].startswith("2 ")
        shown = s.cli(*remote, "flows", "show", "analytics/report", "--revision", "1")
        assert shown.returncode == 0 and "echo one" in shown.stdout
        remote_diff = s.cli(*remote, "flows", "diff", "analytics/report", "1", "2")
        assert remote_diff.returncode == 0 and remote_diff.stdout == diff.text
        labelled = s.cli(*remote, "flows", "list", "--label", "team=data", "--json")
        assert labelled.returncode == 0 and '"report"' in labelled.stdout
