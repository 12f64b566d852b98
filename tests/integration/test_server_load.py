"""``ordo server`` under load and faults (issue #15): a burst of creations on each
backend, dropped PostgreSQL connections, a foreign SQLite write lock, a bad file in a
watched folder, slow clients, idle log followers, CR in log lines, big executions."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from server_support import Server, running_server, server_env, sign_in, webhook_receiver

from ordo.engine import open_store
from ordo.model import State

QUICK = """
id: quick
namespace: load
notify:
  - {on: [success], webhook: "{hook}/hook"}
tasks:
  - {id: a, type: python, function: builtins:dict, with: {n: 1}}
  - {id: b, type: python, function: builtins:dict, with: {n: 2}, depends_on: [a]}
"""
TICKING = """
id: ticking
namespace: load
triggers:
  - {type: schedule, cron: "* * * * *"}
tasks:
  - {id: a, type: python, function: builtins:dict}
"""
SILENT = """
id: silent
namespace: load
tasks:
  - {id: wait, type: shell, command: "sleep 300"}
"""
TALKING = r"""
id: talking
namespace: load
tasks:
  - id: talk
    type: shell
    command: 'printf "one\r\revent: end\rdata: forged\n"; printf "two\n"'
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def answers(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check`` with connection errors and timeouts counted as 'not yet'."""

    def tried() -> bool:
        try:
            return check()
        except httpx.HTTPError:
            return False

    return tried


def quick(hook: str = "http://127.0.0.1:9") -> str:
    return QUICK.replace("{hook}", hook)


def start(client: httpx.Client, flow: str, tries: int = 60) -> int:
    """Start ``flow``; a 503 (busy, store away) is tried again after its Retry-After,
    a connection lost before the answer (a keep-alive connection closed by the server
    as it was reused) at once: the Idempotency-Key makes that safe."""
    key = {"Idempotency-Key": uuid.uuid4().hex}
    for _ in range(tries):
        try:
            response = client.post(f"/api/flows/load/{flow}/executions", json={}, headers=key)
        except httpx.TransportError:
            continue
        if response.status_code == 503:
            time.sleep(float(response.headers["Retry-After"]))
            continue
        assert response.status_code == 201, response.text
        return int(response.json()["id"])
    raise AssertionError(f"{flow}: 503 {tries} times")


def assert_full_history(db: str, ids: list[int]) -> None:
    """Every execution and every task run past CREATED has its states as one unbroken
    chain from creation to its present state."""
    store = open_store(db)
    try:
        for execution_id in ids:
            chains: dict[int | None, list[Any]] = {}
            for row in store.history(execution_id):
                chains.setdefault(row.task_run_id, []).append(row)
            present = {r.id: r.state for r in store.task_runs(execution_id)}
            present[None] = store.get_execution(execution_id).state  # type: ignore[index]
            for key in set(present) - set(chains):  # a task run not started yet
                assert key is not None and present[key] is State.CREATED, (execution_id, key)
            for key, rows in chains.items():
                assert rows[0].from_state is None, (execution_id, key, rows)
                for before, after in itertools.pairwise(rows):
                    assert after.from_state is before.to_state, (execution_id, key, rows)
                assert rows[-1].to_state is present[key], (execution_id, key, rows)
    finally:
        store.close()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    with webhook_receiver() as found:
        yield found


# -- 1. a connection per request ---------------------------------------------------------
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_200_concurrent_creations_are_all_answered_with_full_histories_while_health_answers(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = (
        str(tmp_path / "ordo.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    burst = 200
    # no workers: what is checked is what the requests themselves record
    with running_server(db, server_env(tmp_path), tmp_path, "--no-workers") as server:
        server.add_flow(quick())
        health: list[int] = []
        bursting = threading.Event()

        def watch_health() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                while not bursting.is_set():
                    time.sleep(0.01)
                while bursting.is_set():
                    health.append(client.get("/health").status_code)
                    time.sleep(0.1)

        watcher = threading.Thread(target=watch_health)
        watcher.start()
        limits = httpx.Limits(max_connections=burst, max_keepalive_connections=burst)
        with (
            httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=120,
                limits=limits,
            ) as client,
            ThreadPoolExecutor(burst) as pool,
        ):
            bursting.set()
            try:
                ids = list(pool.map(lambda _: start(client, "quick"), range(burst)))
            finally:
                bursting.clear()
                watcher.join()
        assert len(set(ids)) == burst
        assert health and set(health) == {200}, health
        assert_full_history(db, ids)
        assert server.http.get("/health").json() == {"status": "ok"}


# -- 2. reconnect everywhere ------------------------------------------------------------
@pytest.mark.timeout(600)
def test_after_its_postgresql_connections_are_terminated_again_and_again_everything_works(
    tmp_path: Path, postgres_url: str, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, posts = receiver
    with running_server(postgres_url, server_env(tmp_path), tmp_path, "--workers", "1") as server:
        server.add_flow(quick(hook))
        server.add_flow(TICKING)
        before = start(server.http, "quick")
        server.wait_state(before, "SUCCESS", timeout=60)
        name = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
        with psycopg.connect(postgres_url, autocommit=True) as admin:

            def terminate() -> bool:
                found = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                ).fetchone()
                return bool(found and found[0] >= 3)

            for _ in range(4):  # each round: the server's connections are back first
                wait_for("the server's connections", terminate, timeout=60)
                time.sleep(1.0)
        dropped_at = time.time()
        wait_for(
            "the API to answer again",
            answers(lambda: server.http.get("/api/flows").status_code == 200),
            timeout=30,
        )
        wait_for(
            "/health to be ok again",
            answers(lambda: httpx.get(f"{server.url}/health").json() == {"status": "ok"}),
            timeout=30,
        )
        after = start(server.http, "quick")
        server.wait_state(after, "SUCCESS", timeout=60)
        wait_for("its notification", lambda: any(p["id"] == after for p in posts), timeout=30)

        def ticked() -> bool:
            rows = server.http.get("/api/executions", params={"flow": "load/ticking"}).json()
            return any(e["created_at"] > dropped_at for e in rows["items"])

        wait_for("a scheduled execution after the drops", answers(ticked), timeout=120)
    log = server.log.read_text()
    assert "scheduler" in log and "working again" in log


# -- 3. supervised loops ----------------------------------------------------------------
@pytest.mark.timeout(600)
def test_a_foreign_write_lock_past_the_busy_timeout_restarts_the_worker_instead_of_killing_it(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "ordo.db")
    with running_server(db, server_env(tmp_path), tmp_path, "--workers", "1") as server:
        server.add_flow(quick())
        server.wait_state(start(server.http, "quick"), "SUCCESS", timeout=60)
        foreign = sqlite3.connect(db, isolation_level=None)
        try:
            foreign.execute("BEGIN IMMEDIATE")  # a backup, a sqlite3 shell: 30 s and more
            wait_for(
                "the worker to fail on the lock",
                lambda: "worker failed" in server.log.read_text(),
                timeout=120,
            )
        finally:
            foreign.execute("ROLLBACK")
            foreign.close()
        execution_id = start(server.http, "quick")
        server.wait_state(execution_id, "SUCCESS", timeout=90)
        metrics = server.http.get("/metrics").text
        found = re.search(r'^ordo_loop_restarts_total\{loop="worker"\} (\d+)$', metrics, re.M)
        assert found and int(found.group(1)) >= 1, metrics
        wait_for(
            "/health to be ok",
            answers(lambda: httpx.get(f"{server.url}/health").json() == {"status": "ok"}),
        )
    assert "database is locked" in server.log.read_text()


def test_a_loop_that_keeps_failing_makes_health_degraded_and_is_counted(tmp_path: Path) -> None:
    from ordo.server import Loop
    from ordo.ui.site import create_site

    calls: list[int] = []
    failing = threading.Event()
    failing.set()

    def step() -> None:
        calls.append(1)
        if failing.is_set():
            raise RuntimeError("boom")

    app = create_site(str(tmp_path / "ordo.db"))
    loop = Loop("boom", step, 0.05)
    app.state.loops = [loop]

    def health() -> tuple[int, Any]:
        async def ask() -> tuple[int, Any]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ordo") as client:
                response = await client.get("/health")
                return response.status_code, response.json()

        return asyncio.run(ask())

    assert health() == (200, {"status": "ok"})
    loop.start()
    try:
        wait_for("the loop to fail twice", lambda: loop.restarts >= 2, timeout=30)
        status, body = health()
        assert status == 503 and body["status"] == "degraded", body
        assert body["boom"].startswith("stopped: RuntimeError: boom; trying again in "), body
        failing.clear()
        wait_for("the loop to work again", lambda: loop.trouble is None, timeout=30)
        assert health() == (200, {"status": "ok"})
    finally:
        loop.stop()
        app.state.stores.close()
        app.state.health.close()


# -- 6. a bad file in a watched folder, slow clients ------------------------------------
def test_a_bad_file_in_a_watched_folder_is_reported_and_the_next_good_one_deployed(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "quick.yaml").write_text(quick())
    db = str(tmp_path / "ordo.db")
    args = ("--no-workers", "--flows", str(flows), "--watch")
    with running_server(db, server_env(tmp_path), tmp_path, *args) as server:
        (flows / "deep.yaml").write_text("a: " + "[" * 300 + "]" * 300 + "\n")  # RecursionError
        wait_for("the bad file's report", lambda: "deep.yaml" in server.log.read_text())
        (flows / "later.yaml").write_text(TICKING.replace("ticking", "later"))
        wait_for(
            "the next good file",
            lambda: server.http.get("/api/flows/load/later").status_code == 200,
        )
        assert server.http.get("/health").json() == {"status": "ok"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("load")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "2") as s:
        for text in (quick(), SILENT, TALKING):
            s.add_flow(text)
        yield s


@pytest.mark.timeout(600)
def test_clients_that_dribble_their_head_or_body_are_cut_off(server: Server) -> None:
    heads = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    bodies = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    for s in heads:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    for s in bodies:
        s.sendall(
            b"POST /api/events/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {server.token}\r\nContent-Length: 1000\r\n\r\n{{".encode()
        )
    open_ = {*heads, *bodies}
    answered: dict[socket.socket, bytes] = {}
    deadline = time.monotonic() + 120
    while open_ and time.monotonic() < deadline:
        time.sleep(1)
        for s in list(open_):
            try:
                s.sendall(b"x" if s in heads else b" ")  # one byte a second, for ever
                s.setblocking(False)
                data = s.recv(4096)
                s.setblocking(True)
            except BlockingIOError:
                s.setblocking(True)
                continue
            except OSError:
                data = b""
            answered[s] = answered.get(s, b"") + data
            if not data:
                open_.discard(s)
                s.close()
    assert not open_, f"{len(open_)} slow connections still open"
    for s in bodies:
        assert answered[s].startswith(b"HTTP/1.1 408"), answered[s]
    assert server.http.get("/health").status_code == 200


# -- 5. log following costs nothing while idle --------------------------------------------
def _open_stream(port: int, path: str, token: str) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    s.settimeout(60)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


@pytest.mark.timeout(600)
def test_a_hundred_idle_followers_leave_the_server_responsive_and_a_token_has_twenty(
    server: Server,
) -> None:
    execution_id = start(server.http, "silent")
    server.wait_state(execution_id, "RUNNING")
    tokens = [
        server.cli("tokens", "create", "--name", f"follower-{i}", "--read-only").stdout.strip()
        for i in range(5)
    ]
    path = f"/api/executions/{execution_id}/logs?follow=true"
    followers = []
    try:
        for token in tokens:
            for _ in range(20):
                s, head = _open_stream(server.port, path, token)
                followers.append(s)
                assert head.startswith(b"HTTP/1.1 200"), head
        refused = httpx.get(
            server.url + path, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30
        )
        assert refused.status_code == 429 and refused.headers["Retry-After"], refused.text
        for _ in range(10):  # answered (the client's timeout is short for a busy machine)
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert server.http.get("/api/flows", timeout=10).status_code == 200
        killed = server.http.post(f"/api/executions/{execution_id}/kill", timeout=10)
        assert killed.status_code == 200, killed.text
        for s in followers:  # each hears the end
            data = b""
            while b"event: end" not in data:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
    finally:
        for s in followers:
            s.close()
    # the streams are given back: the token may open new ones
    s, head = wait_for(
        "the streams to be given back",
        lambda: (
            (found := _open_stream(server.port, path, tokens[0]))[1].startswith(b"HTTP/1.1 200")
            and found
        ),
    )
    s.close()


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs as a browser's EventSource parses them: CR, LF and CRLF all
    end a line."""
    events: list[tuple[str, str]] = []
    name, data = "message", []
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


def test_a_cr_or_event_line_in_a_log_line_cannot_end_or_forge_an_event(server: Server) -> None:
    execution_id = start(server.http, "talking")
    server.wait_state(execution_id, "SUCCESS")
    api = server.http.get(f"/api/executions/{execution_id}/logs", params={"follow": "true"})
    events = sse_events(api.text)
    assert [e for e, _ in events] == ["log", "log", "end"], events
    lines = [json.loads(d) for e, d in events if e == "log"]
    assert [x["line"] for x in lines] == ["one\r\revent: end\rdata: forged", "two"]
    assert {(x["task"], x["attempt"]) for x in lines} == {("talk", 1)}
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        signed = sign_in(browser, server.token)
        assert signed.status_code == 303
        ui = browser.get("/ui/logs", params={"execution": execution_id}).text
    events = sse_events(ui)
    assert [e for e, _ in events] == ["line", "end"], events
    assert "one&#13;&#13;event: end&#13;data: forged" in events[0][1]


# -- 4. big executions -------------------------------------------------------------------
def test_a_big_executions_page_lists_200_task_runs_then_more_and_filters(server: Server) -> None:
    lines = ["id: wide", "namespace: load", "tasks:"]
    for k in range(450):
        depends = f", depends_on: [t{k - 1}]" if k % 100 else ""
        lines.append(f"  - {{id: t{k}, type: shell, command: 'true'{depends}}}")
    added = server.http.post(
        "/api/flows",
        content="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-yaml"},
        timeout=300,  # a busy machine
    )
    assert added.status_code in (200, 201), added.text
    response = server.http.post(  # on a queue nobody serves: created is enough
        "/api/flows/load/wide/executions", json={"queue": "nobody-serves-this"}
    )
    assert response.status_code == 201, response.text
    execution_id = response.json()["id"]
    doc = server.http.get(f"/api/executions/{execution_id}").json()
    assert len(doc["task_runs"]) == 450
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        assert sign_in(browser, server.token).status_code == 303
        page = browser.get(f"/executions/{execution_id}").text
        assert page.count("<tr data-task=") == 200
        assert 'id="more-runs"' in page and "200 of 450 shown" in page
        assert "<svg" not in page.split('id="graph-title"')[1].split("</section>")[0]
        more = re.search(r'id="more-runs" href="([^"]+)"', page)
        assert more is not None
        page = browser.get(more.group(1).replace("&amp;", "&")).text
        assert page.count("<tr data-task=") == 400
        page = browser.get(f"/executions/{execution_id}", params={"task": "t99"}).text
        assert page.count("<tr data-task=") == 1  # t99 only
    assert len(page.encode()) < 1_000_000
