"""Hostile bodies against a real server: an alias bomb sent to /api/flows/validate with a
read-only token does not freeze the API; deep or huge-numbered JSON in webhook and event
bodies is refused with 422 before anything else (no token needed for the webhook), never
with 500."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import Server, running_server, server_env

BOMB = "\n".join(
    [
        "a: &a [x, x, x, x, x, x, x, x, x, x]",
        *(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in itertools.pairwise("abcdefghi")),
        "id: bomb",
        "tasks: [{id: t, type: shell, command: echo}]",
        "",
    ]
)
DEEP = "[" * 5000 + "]" * 5000
FLOW = "id: hook\ntasks: [{id: t, type: shell, command: echo}]\n"
FLOW += "triggers: [{type: webhook, key: s3cretkey123}]\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    db = str(tmp_path / "ordo.db")
    with running_server(db, server_env(tmp_path), tmp_path, "--no-workers") as server:
        yield server


def test_an_alias_bomb_is_refused_at_once_and_the_api_keeps_answering(server: Server) -> None:
    answers: list[int] = []
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set():
            answers.append(httpx.get(f"{server.url}/health", timeout=30).status_code)
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        reader = {"Authorization": f"Bearer {server.reader}", "Content-Type": "application/yaml"}
        for _ in range(5):
            response = httpx.post(
                f"{server.url}/api/flows/validate", content=BOMB, headers=reader, timeout=60
            )
            assert response.status_code == 422, response.text
            assert "alias bomb" in response.json()["detail"]
    finally:
        done.set()
        poller.join()
    assert answers and set(answers) == {200}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (DEEP, "nested deeper than 100 levels"),
        ('{"n": ' + "9" * 5000 + "}", "a number longer than 4300 digits"),
    ],
)
def test_deep_or_huge_number_bodies_are_422_for_webhooks_events_and_flows(
    server: Server, body: str, message: str
) -> None:
    server.add_flow(FLOW)
    json_type = {"Content-Type": "application/json"}
    for key in ("s3cretkey123", "wrong-key"):  # refused before the key is even checked
        hook = httpx.post(
            f"{server.url}/api/webhooks/default/hook/{key}", content=body, headers=json_type
        )
        assert hook.status_code == 422, hook.text
        assert message in hook.json()["detail"]
    event = server.http.post("/api/events/thing.happened", content=body, headers=json_type)
    assert event.status_code == 422, event.text
    assert message in event.json()["detail"]
    flow = server.http.post("/api/flows/validate", content=body, headers=json_type)
    assert flow.status_code == 422, flow.text
    assert message in flow.json()["detail"]
    yaml_flow = server.http.post(
        "/api/flows", content=body, headers={"Content-Type": "application/yaml"}
    )
    assert yaml_flow.status_code == 422, yaml_flow.text
