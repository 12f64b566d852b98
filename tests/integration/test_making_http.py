"""Flows, packages and schedules made through the API and the web UI's forms, against a
real ``ordo server``: what is stored, what runs, and every bad input refused with what
and where."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import Server, running_server, server_env, sign_in

SCRIPT = "import json, os\nprint(json.load(open(os.environ['ORDO_CONFIG'])))\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("making")
    env = server_env(folder, ORDO_MAX_UPLOAD="2000")
    with running_server(str(folder / "ordo.db"), env, folder, "--workers", "2") as s:
        yield s


def _zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as z:
        for name, content in entries.items():
            z.writestr(name, content)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            z.writestr(info, "/etc/passwd")
    return data.getvalue()


def test_a_package_sent_as_a_multipart_form_runs_its_scripts_with_its_config(
    server: Server,
) -> None:
    files = [
        ("files", ("config.json", b'{"items": [1, 2]}', "application/json")),
        ("files", ("test_scr.py", SCRIPT.encode(), "text/x-python")),
        ("files", ("notes.txt", b"kept", "text/plain")),
    ]
    fields = {"name": "pkg", "namespace": "proj", "labels": "team=data", "description": "d"}
    response = server.http.post("/api/packages", data=fields, files=files)
    assert response.status_code == 201, response.text
    assert response.json()["tasks"] == ["notes.txt", "test_scr.py"]
    assert response.json()["labels"] == {"team": "data"}
    started = server.http.post("/api/flows/proj/pkg/executions", json={})
    doc = server.wait_state(started.json()["id"], "SUCCESS", "WARNING", "FAILED")
    assert doc["state"] == "SUCCESS", doc
    runs = {r["task"]: r["state"] for r in doc["task_runs"]}
    assert runs == {"notes.txt": "SKIPPED", "test_scr.py": "SUCCESS"}
    logs = server.http.get(f"/api/executions/{doc['id']}/logs").text
    assert "{'items': [1, 2]}" in logs


def test_a_package_sent_as_a_zip_of_its_folder(server: Server) -> None:
    body = _zip({"zipped/flow.yaml": b"namespace: proj\n", "zipped/a.sh": b"echo from zip\n"})
    response = server.http.post(
        "/api/packages", content=body, headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 201, response.text
    assert (response.json()["namespace"], response.json()["id"]) == ("proj", "zipped")


@pytest.mark.parametrize(
    ("entries", "links", "expected"),
    [
        ({"../evil.sh": b"x"}, (), "outside the package's folder"),
        ({"a.sh": b"x"}, ("link.sh",), "symbolic link"),
        ({f"f{i}.sh": b"" for i in range(1001)}, (), "at most 1000"),
    ],
)
def test_a_bad_zip_is_refused_with_422(
    server: Server, entries: dict[str, bytes], links: tuple[str, ...], expected: str
) -> None:
    response = server.http.post(
        "/api/packages", content=_zip(entries, links), headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 422, response.text
    assert expected in response.text


def test_bad_uploads_are_refused_naming_what(server: Server) -> None:
    big = server.http.post(
        "/api/packages", data={"name": "big"}, files=[("files", ("a.sh", b"x" * 2001, "text/x-sh"))]
    )
    assert big.status_code == 413 and "2000 bytes (server.max_upload)" in big.text
    bad_name = server.http.post(
        "/api/packages", data={"name": "n"}, files=[("files", (".hidden.sh", b"x", "text/x-sh"))]
    )
    assert bad_name.status_code == 422 and "'.hidden.sh'" in bad_name.text
    config = server.http.post(
        "/api/packages",
        data={"name": "c"},
        files=[
            ("files", ("config.json", b'{\n  "a": 1,\n}', "application/json")),
            ("files", ("a.sh", b"echo", "text/x-sh")),
        ],
    )
    assert config.status_code == 422 and "config.json:3:" in config.text, config.text
    cron = server.http.post(
        "/api/packages",
        data={"name": "c2", "cron": "61 * * * *"},
        files=[("files", ("a.sh", b"echo", "text/x-sh"))],
    )
    assert cron.status_code == 422 and "minute 61 is out of range" in cron.text
    assert server.http.get("/api/flows/default/c").status_code == 404


def test_schedules_through_the_api_and_the_cli(server: Server) -> None:
    server.add_flow(
        "id: sched\nnamespace: demo\ninputs:\n  n: {type: int, default: 1}\n"
        "tasks:\n  - {id: a, type: shell, command: 'echo {{ inputs.n }}'}\n"
    )
    bad = server.http.post("/api/schedules", json={"flow": "demo/sched", "cron": "61 * * * *"})
    assert bad.status_code == 422 and "minute 61 is out of range 0-59" in bad.text
    assert server.http.get("/api/schedules").json() == []
    added = server.http.post(
        "/api/schedules", json={"flow": "demo/sched", "every": 15, "inputs": {"n": "3"}}
    )
    assert added.status_code == 201, added.text
    doc = added.json()
    assert (doc["cron"], doc["inputs"], len(doc["next"])) == ("*/15 * * * *", {"n": 3}, 5)
    listed = server.cli("schedules", "list")
    assert "demo/sched" in listed.stdout and "*/15 * * * *" in listed.stdout
    changed = server.http.put(
        f"/api/schedules/{doc['id']}", json={"cron": "0 6 * * 1", "active": False}
    )
    assert changed.json()["active"] is False and changed.json()["next"] == []
    removed = server.cli("schedules", "remove", str(doc["id"]))
    assert removed.returncode == 0, removed.stderr
    assert server.http.get(f"/api/schedules/{doc['id']}").status_code == 404
    preview = server.http.get("/api/schedules/next", params={"cron": "20****"})
    assert preview.status_code == 422


def test_the_ui_forms_need_csrf_and_a_writing_token(server: Server) -> None:
    with httpx.Client(base_url=server.url) as browser:
        sign_in(browser, server.reader)
        page = browser.get("/flows/new")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        text = "id: made\ntasks:\n  - {id: a, type: shell, command: echo}\n"
        refused = browser.post("/flows/new", data={"text": text, "csrf": csrf})
        assert refused.status_code == 403 and "read-only" in refused.text
    with httpx.Client(base_url=server.url) as browser:
        sign_in(browser, server.token)
        no_csrf = browser.post("/flows/new", data={"text": text})
        assert no_csrf.status_code == 403
        csrf = browser.get("/flows/new").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        checked = browser.post("/flows/validate", data={"text": "id: x\ntasks: 3\n", "csrf": csrf})
        assert 'data-line="2"' in checked.text
        bad = browser.post("/flows/new", data={"text": "id: [\n", "csrf": csrf})
        assert bad.status_code == 422 and "line 2, column 1" in bad.text
        saved = browser.post("/flows/new", data={"text": text, "csrf": csrf})
        assert saved.status_code == 303 and saved.headers["location"] == "/flows/default/made"
        assert "Edit" in browser.get("/flows/default/made").text


def test_a_flow_from_a_file_is_read_only_in_the_browser(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "filed.yaml"
    path.write_text("id: filed\ntasks:\n  - {id: a, type: shell, command: echo}\n")
    assert server.cli("flows", "add", str(path)).returncode == 0
    with httpx.Client(base_url=server.url) as browser:
        sign_in(browser, server.token)
        shown = browser.get("/flows/default/filed").text
        assert "Read-only: this flow comes from the file" in shown and 'id="edit-flow"' not in shown
        csrf = shown.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        text = "id: filed\ntasks:\n  - {id: b, type: shell, command: echo}\n"
        refused = browser.post("/flows/new", data={"text": text, "csrf": csrf})
        assert refused.status_code == 409 and "read-only here" in refused.text
    assert json.dumps(server.http.get("/api/flows/default/filed").json()["tasks"]) == '["a"]'


def test_a_package_with_sql_scripts_names_its_connection(server: Server, tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    assert (
        server.cli(
            "connections", "add", "wh", "--type", "sql", "--url", f"sqlite:///{db}"
        ).returncode
        == 0
    )
    files = [("files", ("1_make.sql", b"CREATE TABLE t (x INTEGER);", "text/plain"))]
    missing = server.http.post("/api/packages", data={"name": "sqlpkg"}, files=files)
    assert missing.status_code == 422 and "connection" in missing.text
    made = server.http.post(
        "/api/packages", data={"name": "sqlpkg", "connection": "wh"}, files=files
    )
    assert made.status_code == 201, made.text
    started = server.http.post("/api/flows/default/sqlpkg/executions", json={})
    assert server.wait_state(started.json()["id"], "SUCCESS", "FAILED")["state"] == "SUCCESS"


def test_the_package_form_refuses_to_edit_a_flow_that_is_not_a_package(server: Server) -> None:
    server.add_flow("id: plain\ntasks:\n  - {id: a, type: shell, command: echo}\n")
    with httpx.Client(base_url=server.url) as browser:
        sign_in(browser, server.token)
        page = browser.get("/flows/new-package", params={"edit": "default/plain"})
        assert page.status_code == 422 and "is not a package" in page.text
