"""The API's documentation: Swagger UI from vendored files (it works with no network:
Chromium loads it while every request leaving 127.0.0.1 is refused), an HTTP bearer
scheme its Authorize button uses, a response model for every route, times also as
ISO 8601."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import ROOT, Server, running_server, server_env

FLOW = """
id: hello
namespace: demo
tasks:
  - {id: a, type: shell, command: "echo hi"}
"""
STATIC = ROOT / "src" / "ordo" / "api" / "static"
CHROMIUM = os.environ.get("ORDO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("docs")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder) as s:
        s.add_flow(FLOW)
        yield s


@pytest.fixture(scope="module")
def openapi(server: Server) -> dict[str, Any]:
    doc: dict[str, Any] = server.http.get("/api/openapi.json").json()
    return doc


def test_the_openapi_document_declares_bearer_auth(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `ordo tokens create` "
            "(read-only tokens may only read).",
        }
    }
    paths = openapi["paths"]
    assert paths["/api/executions"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/health"]["get"]
    assert "security" not in paths["/api/webhooks/{namespace}/{flow_id}/{key}"]["post"]


def test_every_route_describes_its_response(openapi: dict[str, Any]) -> None:
    bare = []
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            ok = next(iter(c for c in operation["responses"] if c.startswith("2")))
            content = operation["responses"][ok].get("content", {})
            if ok == "204":
                continue
            schemas = [c.get("schema", {}) for c in content.values()]
            typed = any(s.get("$ref") or s.get("type") in ("array", "string") for s in schemas)
            if not typed:
                bare.append(f"{method.upper()} {path}")
    assert bare == []
    execution = openapi["components"]["schemas"]["ExecutionDocument"]["properties"]
    assert {"task_runs", "created_at", "created_at_iso", "state"} <= set(execution)


def test_times_also_come_as_iso_8601(server: Server) -> None:
    started = server.http.post("/api/flows/demo/hello/executions", json={}).json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", started["created_at_iso"])
    doc = server.wait_state(started["id"], "SUCCESS")
    assert doc["ended_at_iso"] and doc["task_runs"][0]["attempts"][0]["started_at_iso"]
    line = server.http.get(f"/api/executions/{started['id']}/logs").json()[0]
    assert line["line"] == "hi" and line["at_iso"].endswith("+00:00")
    flows = server.http.get("/api/flows").json()
    assert flows[0]["created_at_iso"].endswith("+00:00")


def test_vendored_files_match_their_readme() -> None:
    table = (STATIC / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", table, re.M)
    assert len(rows) == 6
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name


def test_the_docs_page_works_offline_and_authorize_sends_the_token(server: Server) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    local = server.url + "/"
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(30_000)

            def guard(route: Any) -> None:
                if route.request.url.startswith(local):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            tab.route("**/*", guard)
            tab.goto(server.url + "/api/docs")
            operations = tab.locator(".opblock")
            sync_api.expect(operations.first).to_be_visible(timeout=30_000)
            assert operations.count() >= 30
            sync_api.expect(tab.locator(".information-container")).to_contain_text("ordo")
            tab.click("button.authorize")
            tab.fill(".modal-ux input[type=text], .modal-ux input[type=password]", server.token)
            tab.click(".modal-ux button.authorize[type=submit]")
            tab.click(".modal-ux button.btn-done")
            listing = tab.locator("#operations-executions-list_executions_api_executions_get")
            listing.locator(".opblock-summary").click()
            listing.locator("button.try-out__btn").click()
            listing.locator("button.execute").click()
            status = listing.locator(".live-responses-table tbody .response-col_status").first
            sync_api.expect(status).to_have_text("200", timeout=30_000)
        finally:
            browser.close()
    assert outside == []
