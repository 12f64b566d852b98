"""``ordo executioner`` behaving as the real engine does (compat/executioner.md): retries
that belong to their job's run, a sequential run that stops at the first failure,
checks that fail one job (unknown names, wrong parameters, exceptions), plugins that
register checks and dependency types, resume counts and ``--skip`` on a resume, the
main run log and the colours of the summary. Through the real command, sequential and
parallel, on a real SQLite store."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pytest
from executioner_support import Executioner, field, run_id, span, stamp

from ordo.model import State

MODES = {"sequential": ("--sequential",), "parallel": ("--parallel", "--workers", "2")}

PLUGIN = """
import os

def rows_at_least(path, minimum):
    with open(path) as f:
        rows = sum(1 for _ in f)
    return rows >= minimum, f"{rows} rows in {path}"

def file_arrived(path):
    return os.path.exists(path)

def broken(**params):
    raise RuntimeError("the catalog is down")

CHECKS = {"rows_at_least": rows_at_least}
DEPENDENCY_TYPES = {"file_arrived": file_arrived, "broken": broken}
"""

#: The Executioner's own plugin shape: a class registered under the entry's name.
CLASS_PLUGIN = """
class Quota:
    def __init__(self, params=None):
        self.params = params or {}

    def check(self):
        return self.params.get("left", 0) > 0

PLUGIN_CLASS = Quota
"""


@pytest.fixture
def ex(ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path) -> Executioner:
    return Executioner(ordo_cmd, ordo_env, tmp_path)


def counter(name: str, fail_times: int) -> str:
    """A command that fails its first ``fail_times`` runs, stamping each run's start
    and end into ``<name>.t``."""
    return (
        f"date +%s.%N >> {name}.t; n=$(cat {name}.n 2>/dev/null || echo 0); "
        f"echo $((n+1)) > {name}.n; sleep 0.2; date +%s.%N >> {name}.t; [ $n -ge {fail_times} ]"
    )


def stamps(folder: Path, name: str) -> list[float]:
    return [float(x) for x in (folder / f"{name}.t").read_text().split()]


@pytest.mark.parametrize("mode", MODES)
def test_a_jobs_retries_belong_to_its_run(ex: Executioner, db: str, mode: str) -> None:
    ex.db = db  # on SQLite and PostgreSQL
    jobs = [
        {"id": "flaky", "command": counter("flaky", 2)},
        {"id": "next", "command": stamp("next")},
        {"id": "last", "command": stamp("last", 0.2)},
    ]
    retry = {"default_max_retries": 2, "default_retry_delay": 0.5, "default_retry_jitter": 0}
    result = ex.run(jobs, *MODES[mode], **retry)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ex.states(run_id(result.stdout))["flaky"] == (State.SUCCESS, 3)
    flaky_end = stamps(ex.folder, "flaky")[-1]
    if mode == "sequential":  # the next job starts only after the last attempt
        assert span(ex.folder, "next")[0] >= flaky_end
        assert span(ex.folder, "last")[0] >= span(ex.folder, "next")[1]
    else:  # the retrying job keeps its worker: the other two share the second one
        (n0, n1), (l0, l1) = span(ex.folder, "next"), span(ex.folder, "last")
        assert n1 <= l0 or l1 <= n0


def test_a_sequential_run_stops_at_the_first_failure(ex: Executioner) -> None:
    jobs = [
        {"id": "bad", "command": "exit 4"},
        *({"id": f"free{n}", "command": f"touch free{n}"} for n in range(4)),
    ]
    result = ex.run(jobs)
    assert result.returncode == 1
    assert field(result.stdout, "Jobs Completed") == 0  # never ran: not completed
    assert field(result.stdout, "Jobs Failed") == 1
    assert not list(ex.folder.glob("free*"))
    states = ex.states(run_id(result.stdout))
    assert {states[f"free{n}"] for n in range(4)} == {(State.SKIPPED, 0)}


def test_a_parallel_run_lets_running_jobs_finish_and_starts_nothing_new(
    ex: Executioner,
) -> None:
    jobs = [
        {"id": "long", "command": "sleep 1.5; touch long.done"},
        {"id": "bad", "command": "sleep 0.2; exit 1"},
        {"id": "later", "command": "touch later.done"},
    ]
    result = ex.run(jobs, *MODES["parallel"])
    assert result.returncode == 1
    assert (ex.folder / "long.done").exists() and not (ex.folder / "later.done").exists()
    assert (field(result.stdout, "Jobs Completed"), field(result.stdout, "Jobs Failed")) == (1, 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_check_that_cannot_pass_fails_only_its_job(ex: Executioner, mode: str) -> None:
    (ex.folder / "plug.py").write_text(PLUGIN)
    checks = {
        "unknown": [{"name": "check_magic", "params": {}}],
        "wrong": [{"name": "check_file_exists", "params": {"file": "x"}}],
        "raising": [{"name": "rows_at_least", "params": {"path": "none.csv", "minimum": 1}}],
    }
    jobs = [
        {"id": job, "command": f"touch {job}.ran", "pre_checks": pre, "max_retries": 2}
        for job, pre in checks.items()
    ]
    jobs += [
        {"id": "after", "command": "touch after.ran", "dependencies": ["unknown"]},
        {"id": "free", "command": "touch free.ran"},
    ]
    result = ex.run(jobs, *MODES[mode], "--continue-on-error", dependency_plugins=["plug.py"])
    assert result.returncode == 1
    assert "jobs[0] (unknown).pre_checks[0]: unknown check 'check_magic'" in result.stderr
    assert "check_file_exists takes one parameter 'path'" in result.stderr
    out = result.stdout
    assert "Pre-check failed: check_magic(): unknown check 'check_magic'" in out
    assert "unexpected keyword argument 'file'" in out
    assert "Pre-check failed: rows_at_least(path='none.csv', minimum=1): FileNotFoundError" in out
    states = ex.states(run_id(out))
    for job in checks:  # failed before its command, never retried
        assert states[job] == (State.FAILED, 1) and not (ex.folder / f"{job}.ran").exists()
    assert states["after"] == (State.SKIPPED, 0) and states["free"] == (State.SUCCESS, 1)
    assert "Skipped Jobs (unmet dependencies):\n  - after:" in out
    stopped = ex.run(jobs)  # sequential, no --continue-on-error: the run stops
    assert stopped.returncode == 1 and field(stopped.stdout, "Jobs Failed") == 1


@pytest.mark.parametrize("mode", MODES)
def test_plugins_register_checks_and_dependency_types(ex: Executioner, mode: str) -> None:
    plugins = ex.folder / "plugins"
    plugins.mkdir()
    (plugins / "warehouse.py").write_text(PLUGIN)
    (plugins / "quota.py").write_text(CLASS_PLUGIN)
    wait = {"poll_interval": 0.2, "max_wait": 60}
    jobs = [
        {"id": "maker", "command": "sleep 1; seq 3 > rows.csv; touch arrived"},
        {
            "id": "waiter",
            "command": stamp("waiter"),
            "dependencies": [{"type": "file_arrived", "path": "arrived", **wait}],
            "post_checks": [
                {"name": "rows_at_least", "params": {"path": "rows.csv", "minimum": 3}}
            ],
        },
        {
            "id": "short",
            "command": "true",
            "dependencies": ["waiter"],
            "post_checks": [
                {"name": "rows_at_least", "params": {"path": "rows.csv", "minimum": 9}}
            ],
        },
        {
            "id": "quota",
            "command": "touch quota.ran",
            "dependencies": [{"type": "quota", "left": 2}],
        },
        {"id": "empty", "command": "touch empty.ran", "dependencies": [{"type": "quota"}]},
        {"id": "down", "command": "true", "dependencies": [{"type": "broken", "x": 1}]},
        {"id": "ghost", "command": "true", "dependencies": [{"type": "nobody_has_it"}]},
    ]
    top = {
        "dependency_plugins": [
            "plugins/warehouse.py",
            {"name": "quota", "path": "plugins/quota.py"},
        ]
    }
    if mode == "sequential":  # the maker must run first: the waiter waits in its slot
        jobs[1]["dependencies"].append("maker")  # type: ignore[attr-defined]
    jobs[4]["dependencies"][0]["max_wait"] = 0.5  # type: ignore[index]
    result = ex.run(jobs, *MODES[mode], "--continue-on-error", **top)
    assert result.returncode == 1
    assert "unknown dependency type 'nobody_has_it'" in result.stderr
    out = result.stdout
    states = ex.states(run_id(out))
    assert states["waiter"] == (State.SUCCESS, 1)
    assert span(ex.folder, "waiter")[0] > (ex.folder / "arrived").stat().st_mtime - 0.05
    assert states["quota"][0] is State.SUCCESS and (ex.folder / "quota.ran").exists()
    assert "Post-check failed: rows_at_least(path='rows.csv', minimum=9): 3 rows in rows.csv" in out
    assert "dependency quota() not satisfied after 0.5s" in out
    assert not (ex.folder / "empty.ran").exists()
    assert "dependency broken(x=1) failed: RuntimeError: the catalog is down" in out
    assert "dependency type 'nobody_has_it' is not registered by any plugin" in out
    assert {j for j, (s, _) in states.items() if s is State.FAILED} == {
        "short",
        "empty",
        "down",
        "ghost",
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def broken(:\n", "plugins/bad.py: import failed: SyntaxError"),
        ("import no_such_module_here\n", "ModuleNotFoundError: No module named"),
        ("CHECKS = {'x': 1}\n", "plugins/bad.py: CHECKS must map names to functions"),
        (None, "plugins/bad.py: dependency plugin not found"),
    ],
)
def test_a_plugin_that_cannot_be_imported_stops_the_run_naming_the_file(
    ex: Executioner, source: str | None, message: str
) -> None:
    (ex.folder / "plugins").mkdir()
    if source is not None:
        (ex.folder / "plugins" / "bad.py").write_text(source)
    result = ex.run([{"id": "a", "command": "touch a.ran"}], dependency_plugins=["plugins/bad.py"])
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (ex.folder / "a.ran").exists()


def test_skip_on_a_resume_is_honoured(ex: Executioner) -> None:
    jobs = [
        {"id": "a", "command": "echo a >> a.count"},
        {"id": "b", "command": "[ -e fixed ]", "dependencies": ["a"]},
        {"id": "c", "command": "touch c.ran", "dependencies": ["b"]},
        {"id": "d", "command": "touch d.ran", "dependencies": ["c"]},
    ]
    first = ex.run(jobs)
    rid = run_id(first.stdout)
    (ex.folder / "fixed").touch()
    again = ex("-c", str(ex.folder / "jobs.json"), "--resume-from", str(rid), "--skip", "c")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not (ex.folder / "c.ran").exists() and (ex.folder / "d.ran").exists()
    assert (ex.folder / "a.count").read_text() == "a\n"
    # a is taken over, c skipped on request: both skipped; a, b, d completed
    assert (field(again.stdout, "Jobs Completed"), field(again.stdout, "Jobs Skipped")) == (3, 2)
    assert ex.states(rid)["c"][0] is State.SKIPPED


def test_the_main_run_log_keeps_the_console_and_every_attempt(ex: Executioner) -> None:
    jobs = [
        {"id": "ok", "command": "true"},
        {"id": "bad", "command": "exit 1", "max_retries": 1, "retry_delay": 0},
    ]
    result = ex.run(jobs, "--continue-on-error", application_name="nightly")
    rid = run_id(result.stdout)
    path = ex.folder / "logs" / f"executioner.nightly.run-{rid}.log"
    text = path.read_text()
    assert f"STARTING EXECUTION Application nightly - RUN #{rid} [SEQUENTIAL]" in text
    assert "bad attempt 1: FAILED" in text and "bad attempt 2: FAILED" in text
    assert "EXECUTION SUMMARY" in text and "Jobs Failed: 1" in text
    assert f"Log: {path}" in result.stdout
    assert "\033[" not in result.stdout  # not a terminal: no colour


def on_terminal(ex: Executioner, *args: str, env: dict[str, str] | None = None) -> str:
    """``ordo executioner`` with a pseudo-terminal as its output: what it printed."""
    main, other = pty.openpty()
    with subprocess.Popen(
        [*ex.cmd, "executioner", *args, "--db", ex.db],
        env=env or ex.env,
        cwd=ex.folder,
        stdout=other,
        stderr=other,
        stdin=subprocess.DEVNULL,
    ) as process:
        os.close(other)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the other end closed: the command has ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=120)
    os.close(main)
    return b"".join(chunks).decode()


def test_the_summary_is_coloured_on_a_terminal_unless_asked_not_to(ex: Executioner) -> None:
    config = str(ex.config([{"id": "ok", "command": "true"}]))
    coloured = on_terminal(ex, "-c", config)
    assert "\033[32mStatus: SUCCESS\033[0m" in coloured
    assert "\033[" not in on_terminal(ex, "-c", config, "--no-color")
    assert "\033[" not in on_terminal(ex, "-c", config, env={**ex.env, "NO_COLOR": "1"})
    plain = subprocess.run(
        [*ex.cmd, "executioner", "-c", config, "--db", ex.db],
        env=ex.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Status: SUCCESS" in plain.stdout and "\033[" not in plain.stdout
