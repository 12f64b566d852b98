"""The web UI over plain HTTP against a real server: sessions, CSRF, read-only tokens,
bad ids and filters, revisions and diffs, log download and the live change stream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from server_support import Server, running_server, server_env, sign_in

FLOW = """
id: pages
namespace: web
labels: {team: ui}
inputs:
  word: {type: string, default: one}
triggers:
  - {type: schedule, cron: "0 3 * * *"}
tasks:
  - id: say
    type: shell
    command: "echo said {{ inputs.word }}; echo to-stderr >&2"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("ui-http")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder) as s:
        s.add_flow(FLOW)
        s.add_flow(FLOW.replace("echo said", "echo told"))  # revision 2
        yield s


@contextmanager
def browser_like(server: Server, token: str) -> Iterator[httpx.Client]:
    """A client signed in like a browser: the session cookie, no Bearer header."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = sign_in(client, token, "/flows")
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/flows"
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        yield client


def csrf_of(client: httpx.Client) -> str:
    text = client.get("/flows").text
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def run_once(server: Server) -> int:
    response = server.http.post("/api/flows/web/pages/executions", json={})
    execution_id = int(response.json()["id"])
    server.wait_state(execution_id, "SUCCESS")
    return execution_id


def test_pages_need_a_session(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        answer = anonymous.get("/executions?state=FAILED")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fexecutions%3Fstate%3DFAILED"
        hx = anonymous.get("/executions", headers={"HX-Request": "true"})
        assert hx.status_code == 401 and hx.headers["HX-Redirect"].startswith("/login")
        # a Bearer token is for the API, not the pages
        bearer = anonymous.get("/", headers={"Authorization": f"Bearer {server.token}"})
        assert bearer.status_code == 303
        # a forged or tampered cookie is no session
        anonymous.cookies.set("ordo_session", "1.99999999999.deadbeef")
        assert anonymous.get("/").status_code == 303


def test_sign_in_never_redirects_to_another_site(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            answer = sign_in(client, server.token, target)
            assert answer.headers["location"] == "/"
        bad = sign_in(client, "nope")
        assert bad.status_code == 401 and "unknown or revoked API token" in bad.text


def test_signing_in_needs_the_forms_csrf_token(server: Server) -> None:
    """A page of another site cannot sign a browser in as the attacker: without the
    sign-in form's token and its cookie, no session is made."""
    with httpx.Client(base_url=server.url) as client:
        for data in ({"token": server.token}, {"token": server.token, "csrf": "0" * 64}):
            answer = client.post("/login", data=data)
            assert answer.status_code == 403 and "came from another site" in answer.text
            assert "ordo_session" not in answer.headers.get("set-cookie", "")
        client.get("/login")  # the cookie of one form ...
        other = httpx.get(f"{server.url}/login").text  # ... the token of another
        csrf = other.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert client.post("/login", data={"token": server.token, "csrf": csrf}).status_code == 403
        assert sign_in(client, server.token).status_code == 303


def test_tokens_and_cookies_that_are_not_ascii_are_refused_not_errors(server: Server) -> None:
    with browser_like(server, server.token) as client:
        for given in ("é" * 64, "日本"):
            answer = client.post(
                "/logout", headers={"X-CSRF-Token": given.encode("utf-8")}, data={}
            )
            assert answer.status_code == 403, answer.text
            answer = client.post("/logout", data={"csrf": given})
            assert answer.status_code == 403, answer.text
        answer = client.post("/login", data={"token": server.token, "csrf": "é" * 64})
        assert answer.status_code == 403
    with httpx.Client(base_url=server.url) as anonymous:
        for cookie in ("1.99999999999.é", "1².99999999999.ab", "\u0661.9999999999.ab"):
            raw = f"ordo_session={cookie}".encode()
            assert anonymous.get("/", headers={"Cookie": raw}).status_code == 303, cookie


def test_a_database_copy_cannot_forge_a_session(server: Server) -> None:
    """The store holds each token's hash; a session signed with it (as before) or
    anything else but the server's session key opens no page."""
    import hashlib
    import hmac
    import sqlite3
    import time

    from ordo import services

    hashed = services.token_hash(server.token)
    with sqlite3.connect(server.db) as db:
        (token_id,) = db.execute(
            "SELECT id FROM api_tokens WHERE token_hash = ?", (hashed,)
        ).fetchone()
    body = f"{token_id}.{int(time.time()) + 3600}"
    for text in (f"session.{body}", f"session.{body}.{hashed}"):
        signature = hmac.new(hashed.encode(), text.encode(), hashlib.sha256).hexdigest()
        with httpx.Client(base_url=server.url) as forger:
            forger.cookies.set("ordo_session", f"{body}.{signature}")
            assert forger.get("/flows").status_code == 303
    key = (Path(server.env["ORDO_HOME"]) / "session.key").stat()
    assert key.st_mode & 0o777 == 0o600


def test_every_action_needs_the_csrf_token(server: Server) -> None:
    execution_id = run_once(server)
    with browser_like(server, server.token) as client:
        for path in (
            f"/executions/{execution_id}/save",
            f"/executions/{execution_id}/kill",
            "/flows/web/pages/run",
            "/logout",
        ):
            refused = client.post(path, data={"name": "x"})
            assert refused.status_code == 403, path
            assert "out of date or came from another site" in refused.text
            wrong = client.post(path, data={"name": "x", "csrf": "0" * 64})
            assert wrong.status_code == 403, path
        assert server.http.get(f"/api/executions/{execution_id}").json()["saved"] is None
        token = csrf_of(client)
        saved = client.post(
            f"/executions/{execution_id}/save", data={"name": f"kept-{execution_id}", "csrf": token}
        )
        assert saved.status_code == 303
        assert saved.headers["location"] == f"/executions/{execution_id}"
        header = client.post(
            "/flows/web/pages/run",
            data={"input.word": "by-header"},
            headers={"X-CSRF-Token": token},
        )
        assert header.status_code == 303


def test_a_read_only_session_reads_but_cannot_act(server: Server) -> None:
    execution_id = run_once(server)
    with browser_like(server, server.reader) as client:
        assert client.get(f"/executions/{execution_id}").status_code == 200
        answer = client.post("/flows/web/pages/run", data={"csrf": csrf_of(client)})
        assert answer.status_code == 403 and "read-only" in answer.text


def test_revoking_the_token_ends_its_sessions(server: Server) -> None:
    made = server.cli("tokens", "create", "--name", "short-lived").stdout.strip()
    with browser_like(server, made) as client:
        assert client.get("/flows").status_code == 200
        assert server.cli("tokens", "revoke", "short-lived").returncode == 0
        assert client.get("/flows").status_code == 303


def test_a_token_limited_to_a_namespace_sees_only_that_namespace(server: Server) -> None:
    execution_id = run_once(server)
    made = server.cli("tokens", "create", "--name", "elsewhere", "--namespace", "other")
    assert made.returncode == 0, made.stderr
    with browser_like(server, made.stdout.strip()) as client:
        assert "/flows/web/pages" not in client.get("/flows").text
        assert f'data-id="{execution_id}"' not in client.get("/executions?part=1").text
        for path in (
            "/flows/web/pages",
            f"/executions/{execution_id}",
            f"/executions/{execution_id}/logs",
            f"/executions/{execution_id}/logs.txt",
        ):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert "not found" in answer.text
        token = csrf_of(client)
        run = client.post("/flows/web/pages/run", data={"csrf": token})
        kill = client.post(f"/executions/{execution_id}/save", data={"csrf": token, "name": "x"})
        assert run.status_code == kill.status_code == 404
        tokens = client.get("/tokens").text
        assert "elsewhere" in tokens and f"writer-{server.port}" not in tokens
        assert client.get(f"/ui/live?execution={execution_id}").status_code == 404


def test_actions_that_cannot_be_done_say_why_on_the_page(server: Server) -> None:
    execution_id = run_once(server)
    with browser_like(server, server.token) as client:
        token = csrf_of(client)
        kill = client.post(f"/executions/{execution_id}/kill", data={"csrf": token})
        assert kill.status_code == 409
        assert '<p class="error" role="alert">' in kill.text and "SUCCESS" in kill.text
        replay = client.post(f"/executions/{execution_id}/replay", data={"csrf": token})
        assert replay.status_code == 422 and "choose the task to replay from" in replay.text
        bad_task = client.post(
            f"/executions/{execution_id}/replay", data={"csrf": token, "from": "nope"}
        )
        assert bad_task.status_code in (404, 409, 422) and "nope" in bad_task.text
        labels = client.post("/flows/web/pages/run", data={"csrf": token, "labels": "novalue"})
        assert labels.status_code == 422 and "expected key=value" in labels.text
        revision = client.post("/flows/web/pages/run", data={"csrf": token, "revision": "9"})
        assert revision.status_code == 404 and "revision 9" in revision.text


def test_bad_ids_and_filters_get_pages_not_tracebacks(server: Server) -> None:
    with browser_like(server, server.token) as client:
        for path, status, text in (
            ("/executions/999999", 404, "execution 999999 not found"),
            (f"/executions/{2**64}", 404, "not found"),
            ("/flows/web/missing", 404, "flow web/missing not found"),
            ("/flows/web/pages?revision=7", 404, "revision 7"),
            ("/executions?state=NOPE", 422, "unknown state"),
            ("/executions?since=yesterday", 422, "expected a time span"),
            ("/flows?label=oops", 422, "expected key=value"),
            ("/executions/1/logs?attempt=999999", 404, "attempt 999999"),
        ):
            answer = client.get(path)
            assert answer.status_code == status, (path, answer.status_code)
            assert text in answer.text, path
            assert "Traceback" not in answer.text


def test_flow_page_shows_revisions_their_diff_and_the_next_run(server: Server) -> None:
    with browser_like(server, server.token) as client:
        page = client.get("/flows/web/pages?diff_from=1&diff_to=2").text
        assert '<span class="del">-    command: &#34;echo said' in page
        assert '<span class="add">+    command: &#34;echo told' in page
        old = client.get("/flows/web/pages?revision=1").text
        assert "<h3>Revision 1</h3>" in old and "echo said" in old
        listing = client.get("/flows?label=team=ui").text
        assert "/flows/web/pages" in listing and "03:00:00" in listing
        assert "/flows/web/pages" not in client.get("/flows?label=team=other").text
        assert "/flows/web/pages" not in client.get("/flows?q=zzz").text


def test_executions_filters_and_cursor_pages(server: Server) -> None:
    ids = [
        int(
            server.http.post(
                "/api/flows/web/pages/executions", json={"labels": {"batch": str(i % 2)}}
            ).json()["id"]
        )
        for i in range(4)
    ]
    for execution_id in ids:
        server.wait_state(execution_id, "SUCCESS")
    with browser_like(server, server.token) as client:
        odd = client.get("/executions?label=batch=1&part=1").text
        assert f'data-id="{ids[1]}"' in odd and f'data-id="{ids[0]}"' not in odd
        recent = client.get("/executions?since=1h&flow=web/pages&state=SUCCESS&part=1").text
        assert all(f'data-id="{i}"' in recent for i in ids)
        older = client.get(f"/executions?cursor={ids[2]}&part=1").text
        assert f'data-id="{ids[1]}"' in older and f'data-id="{ids[3]}"' not in older


def test_logs_download_and_the_live_stream(server: Server) -> None:
    execution_id = run_once(server)
    with browser_like(server, server.token) as client:
        text = client.get(f"/executions/{execution_id}/logs.txt")
        assert text.headers["content-disposition"].startswith("attachment;")
        assert " stdout said one" in text.text or " stdout told one" in text.text
        assert " stderr to-stderr" in text.text
        with client.stream("GET", f"/ui/logs?execution={execution_id}") as events:
            body = "".join(events.iter_text())
        assert "event: line" in body and "event: end" in body
        page = client.get(f"/executions/{execution_id}").text
        seen = page.split("&seen=", 1)[1].split('"', 1)[0]
        with client.stream("GET", f"/ui/live?execution={execution_id}&seen=0-0") as live:
            first = ""
            for chunk in live.iter_text():
                first += chunk
                if "event: changed" in first:
                    break
        assert f"data: {seen}" in first


def test_static_files_are_served_and_vendored(server: Server) -> None:
    for path in ("/static/vendor/htmx-2.0.4.min.js", "/static/ordo.js", "/static/ordo.css"):
        assert httpx.get(server.url + path).status_code == 200, path
    assert "/ui/" not in httpx.get(server.url + "/api/openapi.json").text


def test_run_with_options_puts_the_execution_on_a_queue(server: Server) -> None:
    with browser_like(server, server.token) as client:
        token = csrf_of(client)
        bad = client.post("/flows/web/pages/run", data={"csrf": token, "queue": "no spaces"})
        assert bad.status_code == 422 and "is not a queue name" in bad.text
        answer = client.post("/flows/web/pages/run", data={"csrf": token, "queue": "gpu"})
        assert answer.status_code == 303
        execution_id = int(answer.headers["location"].rsplit("/", 1)[1])
        doc = server.http.get(f"/api/executions/{execution_id}").json()
        assert doc["queue"] == "gpu" and doc["state"] == "CREATED"  # no worker serves gpu
        assert doc["task_runs"][0]["state"] == "CREATED"
        assert "<dt>Queue</dt><dd>gpu</dd>" in client.get(f"/executions/{execution_id}").text
        killed = client.post(f"/executions/{execution_id}/kill", data={"csrf": token})
        assert killed.status_code == 303


def test_run_with_options_sets_retry_timeout_and_notify_of_one_run(server: Server) -> None:
    with browser_like(server, server.token) as client:
        token = csrf_of(client)
        form = {"csrf": token, "queue": "gpu", "retry_attempts": "3", "retry_delay": "2s"}
        bad = client.post("/flows/web/pages/run", data={**form, "timeout": "soon"})
        assert bad.status_code == 422 and "run options: timeout: " in bad.text
        assert 'value="soon"' in bad.text and 'value="2s"' in bad.text  # kept as typed
        bad = client.post("/flows/web/pages/run", data={**form, "notify": "nobody"})
        assert bad.status_code == 422 and "expected [STATES:]TARGET" in bad.text
        notify = "failed,killed:ops@example.com\nhttp://127.0.0.1:9/hook"
        answer = client.post(
            "/flows/web/pages/run",
            data={**form, "retry_backoff": "2", "timeout": "10m", "notify": notify},
        )
        assert answer.status_code == 303, answer.text
        execution_id = int(answer.headers["location"].rsplit("/", 1)[1])
        doc = server.http.get(f"/api/executions/{execution_id}").json()
        assert doc["options"] == {
            "retry": {"attempts": 3, "delay": 2.0, "backoff": 2.0},
            "timeout": 600.0,
            "notify": [
                {"on": ["failed", "killed"], "email": ["ops@example.com"], "webhook": None},
                {"on": ["failed"], "email": [], "webhook": "http://127.0.0.1:9/hook"},
            ],
        }
        assert doc["scope"] is None  # an unlimited token
        assert "<dt>Run options</dt>" in client.get(f"/executions/{execution_id}").text
        client.post(f"/executions/{execution_id}/kill", data={"csrf": token})
