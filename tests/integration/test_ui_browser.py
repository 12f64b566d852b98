"""The web UI in a real browser: Debian's Chromium driven by Playwright against a real
``ordo server`` with its own store.

Chromium comes from the system (``/usr/bin/chromium``; ``make test`` installs Debian's
package when it is missing and it runs as root). Without it these tests skip, except
when ``CI=true``: then they fail saying what to install. ``ORDO_SCREENSHOTS=DIR`` keeps
a screenshot of each page there (``make screenshots`` refreshes ``docs/screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import Server, running_server, server_env
from support import patient

playwright_api = pytest.importorskip("playwright.sync_api")
from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import Browser, Page, expect  # noqa: E402

CHROMIUM = os.environ.get("ORDO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# the flags Chromium needs in a container without a display or user namespaces
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

GREET = """
id: greet
namespace: demo
description: Say hello, count and report
labels: {team: web}
inputs:
  name: {type: string, default: world, description: Who to greet}
  times: {type: int, default: 2, description: How many lines}
  loud: {type: bool, default: false}
tasks:
  - id: hello
    type: shell
    command: |
      for i in $(seq {{ inputs.times }}); do echo "hello {{ inputs.name }} $i"; done
      echo "greeting=hello {{ inputs.name }}" >> "$ORDO_OUTPUTS"
  - id: count
    type: python
    function: builtins:dict
    with: {n: "{{ inputs.times }}"}
    depends_on: [hello]
"""
TICKER = """
id: ticker
namespace: demo
tasks:
  - id: tick
    type: shell
    command: |
      for i in $(seq 20); do echo "tick $i"; sleep 0.3; done
  - id: after
    type: shell
    command: echo after
    depends_on: [tick]
"""
SLEEPER = """
id: sleeper
namespace: demo
tasks:
  - id: wait
    type: shell
    command: "echo waiting; sleep 60"
  - id: never
    type: shell
    command: echo never
    depends_on: [wait]
"""
FLAKY = """
id: flaky
namespace: demo
inputs:
  marker: {type: string, required: true}
tasks:
  - id: first
    type: shell
    command: "echo first"
  - id: fragile
    type: shell
    command: |
      test -f "{{ inputs.marker }}" && exit 0
      touch "{{ inputs.marker }}"; echo not yet >&2; exit 3
    depends_on: [first]
"""

WIDE = "id: wide\nnamespace: demo\ntasks:\n" + "".join(
    f"  - {{id: step{i}, type: shell, command: 'echo {i}'"
    + (f", depends_on: [step{i - 1}]" if i else "")
    + "}\n"
    for i in range(12)
)
FANOUT = """
id: fanout
namespace: demo
continue_on_error: true  # every item runs: the first failure would skip items not started
tasks:
  - id: work
    type: shell
    for_each: [1, 2, 3, 4]
    command: "echo item {{ fork.value }}; test {{ fork.value }} -lt 3"
"""


def _chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        message = (
            f"Chromium not found at {CHROMIUM}: install Debian's package "
            "(apt-get install chromium) or set ORDO_CHROMIUM to a Chromium binary"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _chromium_or_skip()
    folder = tmp_path_factory.mktemp("ui")
    with running_server(str(folder / "ordo.db"), server_env(folder), folder, "--workers", "3") as s:
        for text in (GREET, TICKER, SLEEPER, FLAKY, WIDE, FANOUT):
            s.add_flow(text)
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
    tab.set_default_timeout(patient(20) * 1000)  # longer on a loaded machine
    expect.set_options(timeout=patient(5) * 1000)
    sign_in(tab, server)
    yield tab
    context.close()


def sign_in(tab: Page, server: Server) -> None:
    tab.goto(server.url + "/executions")
    expect(tab).to_have_url(re.compile(r"/login\?next="))
    tab.fill("#token", server.token)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(server.url + "/executions")


def mark_page(tab: Page) -> None:
    """Leave a mark in the page's JavaScript state: gone if the page reloads."""
    tab.evaluate("window.__notReloaded = true")


def not_reloaded(tab: Page) -> bool:
    return bool(tab.evaluate("window.__notReloaded === true"))


def start(server: Server, flow: str, inputs: dict[str, Any] | None = None) -> int:
    response = server.http.post(f"/api/flows/demo/{flow}/executions", json={"inputs": inputs or {}})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_signing_in_needs_a_known_token(browser: Browser, server: Server) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(server.url + "/flows")
    expect(tab).to_have_url(re.compile(r"/login\?next=%2Fflows"))
    tab.fill("#token", "ordo_not-a-token")
    tab.click("button[type=submit]")
    expect(tab.locator(".error")).to_have_text("unknown or revoked API token")
    tab.fill("#token", server.token)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(server.url + "/flows")
    cookie = next(c for c in context.cookies() if c["name"] == "ordo_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    tab.click("text=Sign out")
    expect(tab).to_have_url(re.compile(r"/login"))
    tab.goto(server.url + "/flows")
    expect(tab).to_have_url(re.compile(r"/login\?next="))
    context.close()


def test_run_from_the_form_and_watch_it_succeed_without_reloading(
    page: Page, server: Server
) -> None:
    page.goto(server.url + "/flows/demo/greet")
    page.fill("#input-name", "browser")
    page.fill("#input-times", "3")
    page.click("button[name=mode][value=run]")
    expect(page).to_have_url(re.compile(r"/executions/\d+$"))
    mark_page(page)
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS")
    expect(page.locator('.node[data-task="count"]')).to_have_attribute("data-state", "SUCCESS")
    expect(page.locator("#log-lines")).to_contain_text("hello browser 3")
    assert not_reloaded(page)
    execution_id = int(page.url.rsplit("/", 1)[1])
    doc = server.http.get(f"/api/executions/{execution_id}").json()
    assert doc["inputs"] == {"name": "browser", "times": 3, "loud": False}
    assert doc["started_by"].startswith("ui:")


def test_a_bad_input_is_shown_next_to_its_field(page: Page, server: Server) -> None:
    page.goto(server.url + "/flows/demo/greet")
    page.fill("#input-name", "kept")
    page.fill("#input-times", "1.5")
    page.click("button[name=mode][value=run]")
    error = page.locator("#input-times-error")
    expect(error).to_contain_text("expected an int")
    expect(page.locator("#input-times")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#input-times")).to_have_value("1.5")  # what was typed stays
    expect(page.locator("#input-name")).to_have_value("kept")
    page.goto(server.url + "/flows/demo/flaky")
    page.click("button[name=mode][value=run]")
    expect(page.locator("#input-marker-error")).to_contain_text("input 'marker' is required")


def test_run_in_dev_mode_with_labels(page: Page, server: Server) -> None:
    page.goto(server.url + "/flows/demo/greet")
    page.click("summary:has-text('Options')")
    page.fill("#run-labels", "env=test, who=me")
    page.click("button[name=mode][value=dev]")
    expect(page).to_have_url(re.compile(r"/executions/\d+$"))
    execution_id = int(page.url.rsplit("/", 1)[1])
    doc = server.wait_state(execution_id, "SUCCESS")
    assert doc["dev"] is True
    assert doc["labels"] == {"team": "web", "env": "test", "who": "me"}


def test_live_logs_of_a_running_task(page: Page, server: Server) -> None:
    execution_id = start(server, "ticker")
    page.goto(f"{server.url}/executions/{execution_id}")
    mark_page(page)
    link = page.locator('tr[data-task="tick"] a.logs-link').first
    expect(link).to_be_visible()
    link.click()
    expect(page.locator(".logs-head")).to_contain_text("tick, attempt 1")
    expect(page.locator("#log-lines")).to_contain_text("tick 3")
    assert server.http.get(f"/api/executions/{execution_id}").json()["state"] == "RUNNING"
    expect(page.locator("#log-lines")).to_contain_text("tick 8")  # still arriving
    page.fill(".log-search", "tick 1")
    visible = page.locator("#log-lines li:visible")
    expect(visible.first).to_contain_text("tick 1")
    assert all("tick 1" in t for t in visible.all_inner_texts())
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    assert not_reloaded(page)
    with page.expect_download() as download:
        page.click("text=Download")
    text = Path(download.value.path()).read_text()
    assert "tick 20" in text


def test_kill_a_running_execution(page: Page, server: Server) -> None:
    execution_id = start(server, "sleeper")
    server.wait_state(execution_id, "RUNNING")
    page.goto(f"{server.url}/executions/{execution_id}")
    actions = page.locator(".actions")
    for verb in ("restart", "replay", "mark"):  # not while it runs
        expect(actions.locator(f"button[data-dialog={verb}-dialog]")).to_have_count(0)
    page.click("button[data-dialog=kill-dialog]")
    dialog = page.locator("#kill-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("button[type=submit]").click()
    expect(page.locator("#live")).to_have_attribute("data-state", "KILLED", timeout=30_000)
    expect(page.locator('tr[data-task="never"]')).to_have_attribute("data-state", "KILLED")
    expect(actions.locator("button[data-dialog=kill-dialog]")).to_have_count(0)
    for verb in ("restart", "replay", "mark"):
        expect(actions.locator(f"button[data-dialog={verb}-dialog]")).to_be_visible()


def test_the_action_bar_follows_the_state_without_reloading(page: Page, server: Server) -> None:
    execution_id = start(server, "ticker")
    server.wait_state(execution_id, "RUNNING")
    page.goto(f"{server.url}/executions/{execution_id}")
    mark_page(page)
    actions = page.locator(".actions")
    expect(actions.locator("button[data-dialog=kill-dialog]")).to_be_visible()
    expect(actions.locator("button[data-dialog=replay-dialog]")).to_have_count(0)
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    expect(actions.locator("button[data-dialog=kill-dialog]")).to_have_count(0)
    expect(actions.locator("button[data-dialog=replay-dialog]")).to_be_visible()
    expect(actions.locator("button[data-dialog=restart-dialog]")).to_have_count(0)  # SUCCESS
    assert not_reloaded(page)


def test_the_whole_log_names_task_and_attempt_on_every_line(page: Page, server: Server) -> None:
    execution_id = start(server, "ticker")
    page.goto(f"{server.url}/executions/{execution_id}")  # lines arrive live over SSE
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    expect(page.locator("#log-lines li").filter(has_text="after#1 after")).to_have_count(1)
    for shown in ("live", "loaded"):
        texts = page.locator("#log-lines li").all_inner_texts()
        assert len(texts) == 21, shown
        assert all(re.match(r"^\d\d:\d\d:\d\d (tick|after)#1 ", t) for t in texts), texts
        page.reload()
        expect(page.locator("#log-lines li")).to_have_count(21)


def test_for_each_nodes_count_items_by_state(page: Page, server: Server) -> None:
    execution_id = start(server, "fanout")
    server.wait_state(execution_id, "FAILED")
    page.goto(f"{server.url}/executions/{execution_id}")
    node = page.locator('.node[data-task="work"]')
    expect(node).to_contain_text("2 succeeded, 2 failed of 4")


def test_a_wide_dag_fits_or_scrolls_and_the_timeline_fills_its_card(
    page: Page, server: Server
) -> None:
    execution_id = start(server, "wide")
    server.wait_state(execution_id, "SUCCESS")
    page.goto(f"{server.url}/executions/{execution_id}")
    box = page.locator(".scroll.dag").first
    svg = box.locator("svg")
    natural = float(svg.get_attribute("width") or 0)
    room = box.evaluate("b => b.clientWidth")
    assert natural > room  # 12 columns in a 1280 px window
    shown = svg.evaluate("s => s.getBoundingClientRect().width")
    assert shown < natural and abs(shown - natural * 0.6) < 2  # shrunk as far as allowed
    expect(page.locator(".dag-tools .scroll-hint")).to_be_visible()  # then it scrolls
    assert box.evaluate("b => b.scrollWidth > b.clientWidth")
    page.click(".dag-zoom")
    expect(page.locator(".dag-zoom")).to_have_attribute("aria-pressed", "true")
    assert abs(svg.evaluate("s => s.getBoundingClientRect().width") - natural) < 2
    page.click(".dag-zoom")  # back to fitting, for the other tests' pages
    card = page.locator("section[aria-labelledby=timeline-title]")
    track = page.locator(".timeline .tl-track").nth(1)
    card_w = card.evaluate("c => c.clientWidth")
    track_w = track.evaluate("t => t.getBoundingClientRect().width")
    assert track_w > card_w - 300  # the track takes what the 200 px labels leave
    bars = page.locator(".timeline .tl-bar")
    expect(bars).to_have_count(12)
    last = bars.nth(11).evaluate("b => b.getBoundingClientRect().right")
    assert last > track.evaluate("t => t.getBoundingClientRect().right") - 3
    page.goto(f"{server.url}/executions/{start(server, 'greet')}")
    small = page.locator(".scroll.dag svg")
    assert abs(small.evaluate("s => s.getBoundingClientRect().width") - 408) < 2  # as drawn
    expect(page.locator(".dag-tools .scroll-hint")).to_be_hidden()


def test_the_state_history_of_an_execution(page: Page, server: Server) -> None:
    execution_id = start(server, "flaky", {"marker": "/nonexistent/dir/marker"})
    server.wait_state(execution_id, "FAILED")
    page.goto(f"{server.url}/executions/{execution_id}")
    page.click("#history summary")
    rows = page.locator("#history-rows tr[data-to]")
    expect(rows.first).to_contain_text("execution")
    expect(rows.first).to_contain_text("CREATED")
    expect(page.locator('#history-rows tr[data-task="fragile"][data-to="FAILED"]')).to_contain_text(
        "exit code 3"
    )
    expect(rows.last).to_contain_text("task 'fragile' failed")
    api = server.http.get(f"/api/executions/{execution_id}/history").json()
    expect(rows).to_have_count(len(api))


def test_restart_a_failed_execution(page: Page, server: Server, tmp_path: Path) -> None:
    execution_id = start(server, "flaky", {"marker": str(tmp_path / "marker")})
    server.wait_state(execution_id, "FAILED")
    page.goto(f"{server.url}/executions/{execution_id}")
    expect(page.locator("#live")).to_have_attribute("data-state", "FAILED")
    page.click("button[data-dialog=restart-dialog]")
    page.locator("#restart-dialog button[type=submit]").click()
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    expect(page.locator('tr[data-task="fragile"] .attempt')).to_have_count(2)


def test_save_an_execution_and_start_a_new_run_from_it(page: Page, server: Server) -> None:
    execution_id = start(server, "greet", {"name": "saved-one", "times": 4})
    server.wait_state(execution_id, "SUCCESS")
    page.goto(f"{server.url}/executions/{execution_id}")
    page.click("button[data-dialog=save-dialog]")
    page.fill("#save-name", f"four-lines-{execution_id}")
    page.fill("#save-description", "four lines for the saved one")
    page.locator("#save-dialog button[type=submit]").click()
    expect(page.locator(".facts")).to_contain_text(f"four-lines-{execution_id}")
    page.goto(server.url + "/flows/demo/greet")
    page.select_option("select[name=from]", str(execution_id))
    page.click("text=Fill in")
    expect(page.locator("#input-name")).to_have_value("saved-one")
    expect(page.locator("#input-times")).to_have_value("4")
    page.click("button[name=mode][value=run]")
    expect(page).to_have_url(re.compile(r"/executions/\d+$"))
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id != execution_id
    doc = server.wait_state(new_id, "SUCCESS")
    assert doc["inputs"]["name"] == "saved-one" and doc["inputs"]["times"] == 4


def test_replay_from_a_task_and_mark_one(page: Page, server: Server) -> None:
    execution_id = start(server, "greet", {"name": "replayed"})
    server.wait_state(execution_id, "SUCCESS")
    page.goto(f"{server.url}/executions/{execution_id}")
    page.click("button[data-dialog=replay-dialog]")
    page.select_option("#replay-from", "count")
    page.locator("#replay-dialog button[type=submit]").click()
    expect(page).not_to_have_url(f"{server.url}/executions/{execution_id}")
    expect(page.locator(".facts")).to_contain_text(f"#{execution_id}")  # "Replays #n"
    expect(page.locator("#live")).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    page.click("button[data-dialog=mark-dialog]")
    page.select_option("#mark-task", "count")
    page.select_option("#mark-state", "failed")
    page.fill("#mark-reason", "wrong numbers")
    page.locator("#mark-dialog button[type=submit]").click()
    expect(page.locator('tr[data-task="count"]')).to_have_attribute("data-state", "FAILED")
    expect(page.locator("#live")).to_have_attribute("data-state", "FAILED")


def test_new_executions_appear_in_the_list_without_reloading(page: Page, server: Server) -> None:
    page.goto(server.url + "/executions")
    mark_page(page)
    execution_id = start(server, "greet", {"name": "listed"})
    row = page.locator(f'#execution-rows tr[data-id="{execution_id}"]')
    expect(row).to_be_visible()
    expect(row).to_have_attribute("data-state", "SUCCESS", timeout=30_000)
    assert not_reloaded(page)
    page.goto(server.url + "/executions?state=SUCCESS&flow=demo/greet")
    states = page.locator("#execution-rows tr").evaluate_all(
        "rows => rows.map(r => r.dataset.state)"
    )
    assert states and set(states) == {"SUCCESS"}


PAGES = [
    ("dashboard", "/"),
    ("flows", "/flows"),
    ("flow", "/flows/demo/greet"),
    ("executions", "/executions"),
    ("execution", "/executions/{execution}"),
    ("workers", "/workers"),
    ("connections", "/connections"),
    ("tokens", "/tokens"),
]


def test_every_page_passes_an_accessibility_check(
    page: Page, browser: Browser, server: Server
) -> None:
    execution_id = start(server, "flaky", {"marker": "/nonexistent/dir/marker"})
    server.wait_state(execution_id, "FAILED")
    server.cli(
        "connections",
        "add",
        "warehouse",
        "--type",
        "sql",
        "--url",
        "postgresql://u:pw@127.0.0.1/db",
    )
    shots = os.environ.get("ORDO_SCREENSHOTS")
    axe = Axe()
    problems = []
    for name, path in PAGES:
        page.goto(server.url + path.format(execution=execution_id))
        page.wait_for_load_state("networkidle")
        results = axe.run(page)
        serious = [
            v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")
        ]
        problems += [
            f"{path}: {v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in serious
        ]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)
    context = browser.new_context()
    login = context.new_page()
    login.goto(server.url + "/login")
    results = axe.run(login)
    problems += [
        f"/login: {v['id']}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    if shots:
        login.screenshot(path=str(Path(shots) / "login.png"))
    context.close()
    assert not problems, "\n".join(problems)
