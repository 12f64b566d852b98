"""Making things in the browser (Chromium via Playwright, against a real ``ordo
server``): a flow written in the editor, a package made with the Executor seed's steps,
and a schedule added with the helper."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import Server, running_server, server_env
from support import patient, wait_for
from test_ui_browser import CHROMIUM, CHROMIUM_ARGS, _chromium_or_skip, sign_in

playwright_api = pytest.importorskip("playwright.sync_api")
from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Browser, Page, expect  # noqa: E402

CONFIG = {"items": ["alpha", "beta"]}
TEST_SCR = (
    "import json, os\n"
    "for item in json.load(open(os.environ['ORDO_CONFIG']))['items']:\n"
    "    print('item', item)\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _chromium_or_skip()
    folder = tmp_path_factory.mktemp("making-ui")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "2") as s:
        yield s


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(patient(20) * 1000)
    expect.set_options(timeout=patient(5) * 1000)
    sign_in(tab, server)
    yield tab
    context.close()


def test_a_flow_written_in_the_editor_is_checked_as_typed_and_saved(
    page: Page, server: Server
) -> None:
    page.goto(server.url + "/flows")
    page.click("text=New flow")
    expect(page.locator("#problems .ok")).to_contain_text("Valid")
    editor = page.locator("#flow-text")
    editor.fill("id: typed\nnamespace: demo\ntasks:\n  - id: a\n    type: shel\n")
    problem = page.locator("#problems li").first
    expect(problem).to_contain_text("line 5")
    expect(page.locator(".editor-lines .hl-bad-no")).to_have_text("5")
    expect(page.locator(".editor-highlight .hl-key").first).to_have_text("id")
    editor.fill(
        "id: typed\nnamespace: demo\ntasks:\n  - id: a\n    type: shell\n    command: echo typed\n"
    )
    expect(page.locator("#problems .ok")).to_contain_text("demo/typed, 1 task")
    page.click("button:has-text('Save')")
    expect(page).to_have_url(server.url + "/flows/demo/typed")
    expect(page.locator("#edit-flow")).to_be_visible()
    page.click("button[value=run]")
    expect(page).to_have_url(re.compile(r"/executions/\d+$"))
    execution_id = int(page.url.rsplit("/", 1)[1])
    assert server.wait_state(execution_id, "SUCCESS", "FAILED")["state"] == "SUCCESS"


def _make_package(
    page: Page, server: Server, tmp_path: Path, name: str, cron: str, event: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    script = tmp_path / "test_scr.py"
    script.write_text(TEST_SCR)
    page.goto(server.url + "/flows")  # Executions -> Packages -> +Add
    page.click("text=New package")
    page.fill("#pkg-name", name)  # 1. name
    page.fill("#pkg-description", "prints the items of its config")  # 2. describe
    page.fill("#pkg-namespace", "project-x")  # 3. project
    page.fill("#pkg-labels", "team=data")  # 4. tags
    page.fill("#pkg-cron", cron)  # 5. cron
    page.fill("#pkg-events", event)  # 6. event types
    expect(page.locator("#pkg-manual")).to_be_checked()  # 7. allow manual
    expect(page.locator("#pkg-active")).to_be_checked()  # 8. active
    page.set_input_files("#pkg-config", str(config))  # 9. config.json
    page.click("#add-script")  # 10. +Add more scripts...
    page.set_input_files("#pkg-script-2", str(script))
    page.click("button:has-text('Save')")  # 11. save


def test_a_package_made_with_the_executor_steps_runs_by_hand(
    page: Page, server: Server, tmp_path: Path
) -> None:
    _make_package(page, server, tmp_path, "executor-pkg", "", "")
    expect(page).to_have_url(server.url + "/flows/project-x/executor-pkg")
    expect(page.locator("h1")).to_contain_text("executor-pkg")
    expect(page.locator("#edit-flow")).to_be_visible()
    page.click("button[value=run]")  # Run
    expect(page).to_have_url(re.compile(r"/executions/\d+$"))
    execution_id = int(page.url.rsplit("/", 1)[1])
    doc = server.wait_state(execution_id, "SUCCESS", "FAILED")
    assert doc["state"] == "SUCCESS", doc
    logs = server.http.get(f"/api/executions/{execution_id}/logs").text
    assert "item alpha" in logs and "item beta" in logs


def test_a_package_made_in_the_browser_runs_by_its_event(
    page: Page, server: Server, tmp_path: Path
) -> None:
    _make_package(page, server, tmp_path, "evented", "20 * * * *", "orders.arrived")
    expect(page).to_have_url(server.url + "/flows/project-x/evented")
    emitted = server.http.post("/api/events/orders.arrived", json={})
    started = emitted.json()["executions"]
    assert len(started) == 1
    assert server.wait_state(started[0], "SUCCESS", "FAILED")["state"] == "SUCCESS"
    next_times = server.http.get("/api/flows/project-x/evented/next").json()
    assert next_times and next_times[0]["cron"] == "20 * * * *"


def test_a_schedule_added_with_the_helper_shows_its_next_five_times(
    page: Page, server: Server
) -> None:
    server.add_flow(
        "id: nightly\nnamespace: demo\ninputs:\n  n: {type: int, default: 1}\n"
        "tasks:\n  - {id: a, type: shell, command: 'echo {{ inputs.n }}'}\n"
    )
    page.goto(server.url + "/flows/demo/nightly")
    page.click("#schedule-flow")
    expect(page).to_have_url(server.url + "/flows/demo/nightly/schedules")
    page.fill("#sch-cron", "61 * * * *")
    expect(page.locator("#next-times .field-error")).to_contain_text("minute 61 is out of range")
    page.fill("#sch-cron", "")
    page.type("#sch-cron", "30 2 * * *")
    page.fill("#sch-timezone", "Europe/Vienna")
    expect(page.locator("#next-times li")).to_have_count(5)
    page.fill("#sch-input-n", "7")
    page.click("button:has-text('Save schedule')")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text("30 2 * * *")
    expect(page.locator("tbody tr")).to_contain_text("n=7")
    stored = server.http.get("/api/schedules", params={"flow": "demo/nightly"}).json()
    assert [(s["cron"], s["timezone"], s["inputs"]) for s in stored] == [
        ("30 2 * * *", "Europe/Vienna", {"n": 7})
    ]
    page.click("text=Edit")
    page.uncheck("#sch-active")
    page.click("button:has-text('Save schedule')")
    expect(page.locator("tbody tr")).to_contain_text("no")
    page.click("tbody button:has-text('Delete')")
    expect(page.locator("tbody tr")).to_have_count(0)
    wait_for("schedule deleted", lambda: server.http.get("/api/schedules").json() == [])


def test_editing_a_package_keeps_its_files_and_replaces_an_upload(
    page: Page, server: Server, tmp_path: Path
) -> None:
    _make_package(page, server, tmp_path, "edited-pkg", "", "")
    expect(page).to_have_url(server.url + "/flows/project-x/edited-pkg")
    page.click("#edit-flow")
    expect(page).to_have_url(re.compile(r"/flows/new-package\?edit=project-x/edited-pkg"))
    expect(page.locator("#pkg-description")).to_have_value("prints the items of its config")
    expect(page.locator("#package-form")).to_contain_text("test_scr.py")
    extra = tmp_path / "zz_after.sh"
    extra.write_text("echo after the script\n")
    page.set_input_files("#pkg-script-1", str(extra))
    page.click("button:has-text('Save')")
    expect(page).to_have_url(server.url + "/flows/project-x/edited-pkg")
    flow = server.http.get("/api/flows/project-x/edited-pkg").json()
    assert (flow["revision"], flow["tasks"]) == (2, ["test_scr.py", "zz_after.sh"])


def test_the_new_pages_have_no_serious_accessibility_violations(page: Page, server: Server) -> None:
    server.add_flow("id: axe\nnamespace: demo\ntasks:\n  - {id: a, type: shell, command: echo}\n")
    shots = os.environ.get("ORDO_SCREENSHOTS")
    axe = Axe()
    problems = []
    pages = (
        ("editor", "/flows/new"),
        ("package-form", "/flows/new-package"),
        ("schedule-helper", "/flows/demo/axe/schedules"),
    )
    for name, path in pages:
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        found = axe.run(page).response["violations"]
        problems += [
            f"{path}: {v['id']} ({v['impact']}): {v['help']}"
            for v in found
            if v.get("impact") in ("serious", "critical")
        ]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
    assert not problems, "\n".join(problems)
