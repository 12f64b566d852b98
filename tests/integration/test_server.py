"""``ordo server`` through real HTTP: auth, flows, executions, events, webhooks, flags,
logs over SSE, metrics, bad input, the remote CLI and a graceful stop."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import Server, run_ordo, running_server, server_env
from support import patient

FLOW = """
id: hello
namespace: demo
inputs:
  name: {type: string, default: world}
triggers:
  - {type: event, event: file.arrived, filter: "{{ event.data.size > 0 }}"}
  - {type: webhook, key: s3cretkey123}
outputs:
  greeting: "{{ outputs.say.greeting }}"
tasks:
  - id: say
    type: python
    function: builtins:dict
    with: {greeting: "hello {{ inputs.name }}"}
"""
SLOW = """
id: slow
namespace: demo
tasks:
  - id: wait
    type: shell
    command: "echo started; sleep 30"
  - id: after
    type: shell
    command: echo after
    depends_on: [wait]
"""
FAILING = """
id: failing
namespace: demo
inputs:
  fail: {type: string, default: "yes"}
tasks:
  - id: check
    type: shell
    command: "test '{{ inputs.fail }}' = no"
  - id: report
    type: shell
    command: echo report
    depends_on: [check]
"""
MANUAL_OFF = """
id: scheduled-only
namespace: demo
allow_manual: false
tasks:
  - {id: a, type: shell, command: "true"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("server")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "2") as s:
        for text in (FLOW, SLOW, FAILING, MANUAL_OFF):
            s.add_flow(text)
        yield s


def start(server: Server, flow: str, **body: object) -> dict[str, object]:
    response = server.http.post(f"/api/flows/demo/{flow}/executions", json=body)
    assert response.status_code == 201, response.text
    doc: dict[str, object] = response.json()
    return doc


def test_every_route_but_health_needs_a_token_and_read_only_tokens_only_read(
    server: Server,
) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    no_token = httpx.get(f"{server.url}/api/flows")
    assert no_token.status_code == 401 and "Bearer" in no_token.json()["detail"]
    wrong = httpx.get(f"{server.url}/api/flows", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    reader = {"Authorization": f"Bearer {server.reader}"}
    assert httpx.get(f"{server.url}/api/flows", headers=reader).status_code == 200
    refused = httpx.post(f"{server.url}/api/flows/demo/hello/executions", headers=reader)
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert httpx.get(f"{server.url}/metrics").status_code == 401


def test_a_started_execution_runs_and_shows_its_outputs_task_runs_and_attempts(
    server: Server,
) -> None:
    doc = start(server, "hello", inputs={"name": "api"}, labels={"team": "x"})
    assert doc["started_by"] == "api" and doc["labels"] == {"team": "x"}
    ended = server.wait_state(int(str(doc["id"])), "SUCCESS")
    assert ended["outputs"] == {"greeting": "hello api"}
    assert [r["task"] for r in ended["task_runs"]] == ["say"]
    execution_id = ended["id"]
    outputs = server.http.get(f"/api/executions/{execution_id}/outputs").json()
    assert outputs["execution"] == {"greeting": "hello api"}
    attempts = server.http.get(f"/api/executions/{execution_id}/attempts").json()
    assert [a["state"] for a in attempts] == ["SUCCESS"]
    assert server.http.get(f"/api/executions/{execution_id}/task-runs").json()[0]["state"] == (
        "SUCCESS"
    )
    assert server.http.get(f"/api/executions/{execution_id}/metrics").status_code == 200


def test_the_same_idempotency_key_starts_one_execution(server: Server) -> None:
    headers = {"Idempotency-Key": "order-4711"}
    first = server.http.post("/api/flows/demo/hello/executions", headers=headers, json={})
    second = server.http.post("/api/flows/demo/hello/executions", headers=headers, json={})
    assert first.json()["id"] == second.json()["id"]


def test_allow_manual_false_refuses_api_and_cli_starts_with_403(
    server: Server, tmp_path: Path
) -> None:
    refused = server.http.post("/api/flows/demo/scheduled-only/executions", json={})
    assert refused.status_code == 403
    assert "allow_manual: false" in refused.json()["detail"]
    path = tmp_path / "manual.yaml"
    path.write_text(MANUAL_OFF)
    cli = server.cli("run", str(path))
    assert cli.returncode == 2 and "does not allow manual starts" in cli.stderr


def test_listing_pages_with_a_cursor_and_filters(server: Server) -> None:
    for _ in range(3):
        start(server, "hello")
    first = server.http.get("/api/executions", params={"flow": "demo/hello", "limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"] == first["items"][-1]["id"]
    second = server.http.get(
        "/api/executions", params={"flow": "demo/hello", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert all(e["id"] < first["next_cursor"] for e in second["items"])
    bad = server.http.get("/api/executions", params={"state": "BORED"})
    assert bad.status_code == 422 and "BORED" in bad.json()["detail"]
    assert server.http.get("/api/executions/999999").status_code == 404


def test_kill_then_restart_replay_and_mark_through_the_api(server: Server) -> None:
    execution_id = int(str(start(server, "slow")["id"]))
    deadline = time.monotonic() + patient(20)
    while time.monotonic() < deadline:
        runs = server.http.get(f"/api/executions/{execution_id}/task-runs").json()
        if runs[0]["state"] == "RUNNING":
            break
        time.sleep(0.05)
    early = server.http.post(f"/api/executions/{execution_id}/restart", json={})
    assert early.status_code == 409 and early.json()["state"] == "RUNNING"
    killed = server.http.post(f"/api/executions/{execution_id}/kill")
    assert killed.status_code == 200 and killed.json()["state"] in ("KILLING", "KILLED")
    server.wait_state(execution_id, "KILLED")
    again = server.http.post(f"/api/executions/{execution_id}/kill")
    assert again.status_code == 409 and again.json()["state"] == "KILLED"

    failed = int(str(start(server, "failing")["id"]))
    server.wait_state(failed, "FAILED")
    marked = server.http.post(
        f"/api/executions/{failed}/mark", json={"task": "check", "state": "success", "reason": "ok"}
    )
    assert marked.status_code == 200 and marked.json()["new"] == "SUCCESS"
    restarted = server.http.post(f"/api/executions/{failed}/restart", json={})
    assert restarted.status_code == 200 and "report" in restarted.json()["run_again"]
    assert server.wait_state(failed, "SUCCESS")["state"] == "SUCCESS"
    replay = server.http.post(
        f"/api/executions/{failed}/replay", json={"from": "check", "inputs": {"fail": "no"}}
    )
    assert replay.status_code == 201, replay.text
    assert replay.json()["original_id"] == failed
    server.wait_state(replay.json()["id"], "SUCCESS")
    saved = server.http.post(f"/api/executions/{failed}/save", json={"name": "good-run"})
    assert saved.json()["saved"]["name"] == "good-run"


def test_events_start_the_subscribed_flows_with_the_payload(server: Server) -> None:
    response = server.http.post("/api/events/file.arrived", json={"size": 3, "name": "a.csv"})
    assert response.status_code == 202
    started = response.json()["executions"]
    assert len(started) == 1
    doc = server.wait_state(started[0], "SUCCESS")
    assert doc["inputs"]["event"]["data"] == {"size": 3, "name": "a.csv"}
    assert doc["started_by"] == "event:event1"
    filtered = server.http.post("/api/events/file.arrived", json={"size": 0})
    assert filtered.json()["executions"] == []
    cli = server.cli("emit", "file.arrived", "--data", '{"size": 5}', "--json")
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)["executions"]) == 1
    events = server.http.get("/api/events", params={"type": "file.arrived"}).json()
    assert [e["data"] for e in events[:3]] == [
        {"size": 5},
        {"size": 0},
        {"size": 3, "name": "a.csv"},
    ]


def test_webhooks_wait_for_the_end_answer_at_once_with_async_and_hide_wrong_keys(
    server: Server,
) -> None:
    url = f"{server.url}/api/webhooks/demo/hello/s3cretkey123"
    done = httpx.post(url, json={"order": 1}, timeout=40)
    assert done.status_code == 200
    assert done.json()["state"] == "SUCCESS" and done.json()["outputs"] == {
        "greeting": "hello world"
    }
    at_once = httpx.post(url, params={"async": 1}, json={"order": 2})
    assert at_once.status_code == 202 and at_once.json()["id"] > done.json()["id"]
    doc = server.wait_state(at_once.json()["id"], "SUCCESS")
    assert doc["inputs"]["body"] == {"order": 2}
    wrong = httpx.post(f"{server.url}/api/webhooks/demo/hello/guessed-key", json={})
    unknown = httpx.post(f"{server.url}/api/webhooks/demo/nothing/s3cretkey123", json={})
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == {"detail": "no webhook demo/hello/<key>"}


def test_deactivated_flows_ignore_triggers_but_start_by_hand(server: Server) -> None:
    assert server.http.post("/api/flows/demo/hello/deactivate").json() == {"active": False}
    try:
        ignored = server.http.post("/api/events/file.arrived", json={"size": 9})
        assert ignored.json()["executions"] == []
        assert server.http.get("/api/flows/demo/hello").json()["active"] is False
        start(server, "hello")
    finally:
        server.http.post("/api/flows/demo/hello/activate")
    assert (
        len(server.http.post("/api/events/file.arrived", json={"size": 9}).json()["executions"])
        == 1
    )


def test_logs_follow_streams_server_sent_events_until_the_end(server: Server) -> None:
    execution_id = int(str(start(server, "failing", inputs={"fail": "no"})["id"]))
    events = []
    with server.http.stream(
        "GET", f"/api/executions/{execution_id}/logs", params={"follow": "true"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if line.startswith("data:") and events and events[-1] == "end":
                assert json.loads(line[5:])["state"] == "SUCCESS"
                break
    assert events[-1] == "end" and "log" in events
    plain = server.http.get(f"/api/executions/{execution_id}/logs").json()
    assert "report" in [x["line"] for x in plain]


def test_flows_are_created_from_yaml_or_json_and_bad_ones_get_422_with_line_and_field(
    server: Server,
) -> None:
    created = server.http.post(
        "/api/flows",
        json={
            "id": "from-json",
            "namespace": "demo",
            "tasks": [{"id": "a", "type": "shell", "command": "true"}],
        },
    )
    assert created.status_code == 201 and created.json()["id"] == "from-json"
    same = server.http.post(
        "/api/flows",
        json={
            "id": "from-json",
            "namespace": "demo",
            "tasks": [{"id": "a", "type": "shell", "command": "true"}],
        },
    )
    assert same.status_code == 200
    bad_cron = (
        "id: x\ntriggers:\n  - {type: schedule, cron: '61 * * * *', timezone: Mars/Base}\n"
        "tasks:\n  - {id: a, type: shell, command: 'true'}\n"
    )
    response = server.http.post(
        "/api/flows", content=bad_cron, headers={"Content-Type": "application/x-yaml"}
    )
    assert response.status_code == 422
    problems = {p["field"]: p for p in response.json()["problems"]}
    assert (
        problems["triggers[0].cron"]["line"] == 3
        and "minute" in problems["triggers[0].cron"]["message"]
    )
    assert "Mars/Base" in problems["triggers[0].timezone"]["message"]
    other = server.http.put(
        "/api/flows/demo/hello", content=SLOW, headers={"Content-Type": "application/x-yaml"}
    )
    assert other.status_code == 422 and "demo/slow" in other.json()["detail"]
    valid = server.http.post(
        "/api/flows/validate", content=FLOW, headers={"Content-Type": "application/x-yaml"}
    )
    assert valid.json() == {"valid": True, "namespace": "demo", "id": "hello"}
    flow = server.http.get("/api/flows/demo/hello").json()
    assert flow["revisions"][0]["revision"] == flow["revision"]
    assert flow["triggers"][1]["key"] == "****"  # the webhook's secret is not shown
    assert server.http.get("/api/flows/demo/none").status_code == 404
    huge = server.http.post("/api/flows", content=b"x" * 2_000_000)
    assert huge.status_code == 413


def test_metrics_are_prometheus_text(server: Server) -> None:
    start(server, "hello")
    text = server.http.get("/metrics").text
    assert 'ordo_executions{state="SUCCESS"}' in text
    assert 'ordo_task_run_duration_seconds_bucket{le="+Inf"}' in text
    assert "ordo_ready_task_runs " in text and "ordo_workers_alive 1" in text


def test_connections_keep_secrets_write_only_and_workers_are_listed(server: Server) -> None:
    put = server.http.put(
        "/api/connections/crm",
        json={
            "type": "http",
            "base_url": "https://api.example.com",
            "headers": {"Authorization": "Bearer sekrit"},
        },
    )
    assert put.status_code == 200 and "sekrit" not in put.text
    assert "sekrit" not in server.http.get("/api/connections").text
    bad = server.http.put("/api/connections/crm", json={"type": "http", "url": "x"})
    assert bad.status_code == 422
    assert server.http.delete("/api/connections/crm").status_code == 204
    assert server.http.get("/api/connections/crm").status_code == 404
    workers = server.http.get("/api/workers").json()
    assert any(w["alive"] for w in workers)


def test_the_cli_talks_to_a_remote_server(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "remote.yaml"
    path.write_text(FLOW.replace("id: hello", "id: remote-hello"))
    remote = ["--server", server.url, "--token", server.token]
    env = {**server.env, "ORDO_HOME": str(tmp_path / "elsewhere")}
    ran = run_ordo(env, *remote, "run", str(path), "-i", "name=far")
    assert ran.returncode == 0, ran.stderr
    assert "SUCCESS" in ran.stdout
    listed = run_ordo(env, *remote, "executions", "list", "--flow", "demo/remote-hello", "--json")
    assert json.loads(listed.stdout)[0]["inputs"]["name"] == "far"
    refused = run_ordo(env, "--server", server.url, "--token", server.reader, "run", str(path))
    assert refused.returncode == 2 and "read-only" in refused.stderr
    missing = run_ordo(env, *remote, "kill", "999999")
    assert missing.returncode == 2 and "999999" in missing.stderr


def test_sigterm_stops_the_server_gracefully(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "ordo.db"), server_env(tmp_path), tmp_path)
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 15
    assert "Traceback" not in server.log.read_text()
