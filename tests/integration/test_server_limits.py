"""A server with a small body limit: streamed bodies, revoked tokens, the error shape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import running_server, server_env

from ordo import services
from ordo.engine import open_store


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    db = str(tmp_path / "ordo.db")
    store = open_store(db)
    store.add_token("t", services.token_hash("secret-token"), False, time.time())
    store.close()
    env = server_env(tmp_path, ORDO_MAX_BODY="1000")
    with (
        running_server(db, env, tmp_path, "--no-workers") as server,
        httpx.Client(base_url=server.url) as http,
    ):
        yield http, db


def test_a_streamed_body_over_the_limit_is_refused_with_413(
    client: tuple[httpx.Client, str],
) -> None:
    c, _ = client
    headers = {"Authorization": "Bearer secret-token", "Content-Type": "application/x-yaml"}

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"# " + b"x" * 98 + b"\n"

    response = c.post("/api/flows", content=chunks(), headers=headers)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "request body too large: at most 1000 bytes (server.max_body)"
    }


def test_a_revoked_token_stops_working_at_once(client: tuple[httpx.Client, str]) -> None:
    c, db = client
    headers = {"Authorization": "Bearer secret-token"}
    assert c.get("/api/flows", headers=headers).status_code == 200
    store = open_store(db)
    assert store.list_tokens()[0].last_used_at is not None
    store.revoke_token("t", time.time())
    store.close()
    refused = c.get("/api/flows", headers=headers)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_definition_errors_carry_every_problem(client: tuple[httpx.Client, str]) -> None:
    c, _ = client
    response = c.post(
        "/api/flows/validate",
        content="id: x\ntasks:\n  - {id: a, type: shel}\n  - {id: a, type: shell}\n",
        headers={"Authorization": "Bearer secret-token"},
    )
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert len(problems) >= 2 and all(p["line"] for p in problems)


def _chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 100):
        yield b"x" * 100


def test_a_streamed_body_over_the_limit_is_413_for_model_and_form_routes_too(
    client: tuple[httpx.Client, str],
) -> None:
    c, _ = client
    headers = {"Authorization": "Bearer secret-token", "Content-Type": "application/json"}
    started = c.post("/api/flows/default/x/executions", content=_chunks(2000), headers=headers)
    assert started.status_code == 413, started.text
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    login = c.post("/login", content=_chunks(2000), headers=form)
    assert login.status_code == 413, login.text
