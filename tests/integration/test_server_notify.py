"""Notifications of a real ``ordo server`` to a real SMTP server (aiosmtpd) and a local
HTTP receiver; and the server on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import running_server, server_env, webhook_receiver
from support import patient

NOTIFIED = """
id: nightly
namespace: ops
inputs:
  ok: {type: string, default: "no"}
notify:
  - {on: [failed], email: [ops@example.com, dba@example.com]}
  - {on: [failed, success], webhook: "{hook}/hook"}
  - {on: [failed], webhook: "{hook}/broken"}
tasks:
  - id: load
    type: shell
    command: "test '{{ inputs.ok }}' = yes"
"""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


def wait_for(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_ended_executions_notify_by_mail_and_webhook_and_failures_change_nothing(
    tmp_path: Path,
    smtp: tuple[int, list[Message]],
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    port, mails = smtp
    hook, posts = receiver
    env = server_env(tmp_path, ORDO_SMTP_HOST="127.0.0.1", ORDO_SMTP_PORT=str(port))
    with running_server(str(tmp_path / "ordo.db"), env, tmp_path, "--workers", "1") as server:
        server.add_flow(NOTIFIED.replace("{hook}", hook))
        start = "/api/flows/ops/nightly/executions"
        dev = server.http.post(start, json={"dev": True}).json()["id"]
        failed = server.http.post(start, json={}).json()["id"]
        server.wait_state(failed, "FAILED")
        notes = wait_for(
            lambda: (
                len(server.http.get(f"/api/executions/{failed}").json()["notifications"]) == 3
                and server.http.get(f"/api/executions/{failed}").json()["notifications"]
            )
        )
        by_target = {n["target"].split(":", 1)[0] + n["target"][-6:]: n for n in notes}
        assert by_target["email" + "le.com"]["ok"] is True
        assert by_target["webhook" + "broken"]["ok"] is False
        assert "HTTP 500" in by_target["webhook" + "broken"]["error"]
        wait_for(lambda: mails)
        assert mails[0]["Subject"] == f"[ordo] ops/nightly #{failed} FAILED"
        assert "load: FAILED" in mails[0].get_payload()
        assert [p["id"] for p in posts] == [failed] and posts[0]["state"] == "FAILED"
        assert server.http.get(f"/api/executions/{failed}").json()["state"] == "FAILED"
        good = server.http.post(start, json={"inputs": {"ok": "yes"}}).json()["id"]
        server.wait_state(good, "SUCCESS")
        wait_for(lambda: len(posts) == 2)
        assert posts[1]["state"] == "SUCCESS" and len(mails) == 1  # mail only on failed
        server.wait_state(dev, "FAILED")
        assert server.http.get(f"/api/executions/{dev}").json()["notifications"] == []
    assert "notification of execution" in server.log.read_text()


def test_the_server_on_postgresql_runs_events_and_shares_work(
    postgres_url: str, tmp_path: Path
) -> None:
    flow = (
        "id: pg\nnamespace: demo\ntriggers:\n  - {type: event, event: go}\n"
        "tasks:\n  - {id: a, type: shell, command: 'echo hi'}\n"
    )
    env = server_env(tmp_path)
    with (
        running_server(postgres_url, env, tmp_path, "--workers", "1") as one,
        running_server(postgres_url, env, tmp_path, "--no-workers") as two,
    ):
        one.add_flow(flow)
        started = httpx.post(
            f"{two.url}/api/events/go",
            json={},
            headers={"Authorization": f"Bearer {two.token}"},
        ).json()["executions"]
        assert len(started) == 1
        assert two.wait_state(started[0], "SUCCESS")["state"] == "SUCCESS"
