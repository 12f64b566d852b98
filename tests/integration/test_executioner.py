"""``ordo executioner``: Executioner JSON configs through the real command, on a real
SQLite store, checking exit codes, the summary, job states, attempts, files, order and
overlap (timestamps written by the jobs), environments, checks, security, resume, mark
and the report mailed to a real local SMTP server."""

from __future__ import annotations

import json
import re
import subprocess
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from executioner_support import Executioner, field, run_id, span, stamp

from ordo.model import State


@pytest.fixture
def ex(ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path) -> Executioner:
    return Executioner(ordo_cmd, ordo_env, tmp_path)


def test_a_failure_prints_the_summary_blocks_its_dependents_and_exits_1(ex: Executioner) -> None:
    result = ex.run(
        [
            {"id": "a", "command": "echo from a", "description": "first"},
            {"id": "b", "command": "echo bad >&2; exit 3", "dependencies": ["a"]},
            {"id": "c", "command": "echo c", "dependencies": ["b"], "description": "last"},
            {"id": "d", "command": "echo d"},
        ]
    )
    assert result.returncode == 1, result.stderr
    out = result.stdout
    rid = run_id(out)
    assert (field(out, "Jobs Completed"), field(out, "Jobs Failed")) == (2, 1)
    assert field(out, "Jobs Skipped") == 0
    assert "Failed Jobs:\n  - b: \n    Reason: exit code 3" in out
    assert "Skipped Jobs (unmet dependencies):\n  - c: last" in out
    assert ex.states(rid) == {
        "a": (State.SUCCESS, 1),
        "b": (State.FAILED, 1),
        "c": (State.SKIPPED, 0),
        "d": (State.SUCCESS, 1),
    }
    log = ex.folder / "logs" / f"executioner.app.job-a.run-{rid}.log"
    assert log.read_text().endswith("from a\n")
    assert "bad" in (ex.folder / "logs" / f"executioner.app.job-b.run-{rid}.log").read_text()
    listed = ex("--list-runs", "app")
    assert listed.returncode == 0 and f"{rid:>6}        1  app" in listed.stdout
    shown = ex("--show-run", str(rid))
    assert shown.returncode == 0 and re.search(r"^b\s+FAILED\s+1\s+3", shown.stdout, re.M)
    assert ex("--show-run", "999").returncode == 1
    executions = subprocess.run(
        [*ex.cmd, "executions", "list", "--db", ex.db], env=ex.env, capture_output=True, text=True
    )
    assert "executioner/app" in executions.stdout


def test_success_exits_0_and_the_sample_config_runs_where_it_is(ex: Executioner) -> None:
    sample = ex("--sample-config")
    assert sample.returncode == 0
    doc = json.loads(sample.stdout)  # nothing but JSON
    assert doc["working_dir"] == "."
    folder = ex.folder / "etl"
    folder.mkdir()
    (folder / "sample.json").write_text(sample.stdout)
    result = ex("-c", str(folder / "sample.json"))  # run from ex.folder, not etl/
    assert result.returncode == 0, result.stdout + result.stderr
    assert field(result.stdout, "Jobs Completed") == 3
    assert "Status: SUCCESS" in result.stdout
    assert (folder / "data").is_dir() and (folder / "transform.out").exists()


@pytest.mark.parametrize(
    ("jobs", "top", "message"),
    [
        ([{"id": "a", "command": "true", "dependencies": ["nope"]}], {}, "unknown job 'nope'"),
        (
            [
                {"id": "a", "command": "true", "dependencies": ["c"]},
                {"id": "b", "command": "true", "dependencies": ["a"]},
                {"id": "c", "command": "true", "dependencies": ["b"]},
            ],
            {},
            "circular dependencies: a -> c -> b -> a",
        ),
        ([{"id": "a", "command": 5}], {}, "jobs[0] (a).command: expected a string, found a number"),
        ([{"id": "a", "command": "true", "timeout": "soon"}], {}, "timeout: expected a number"),
        ([{"id": "a", "command": "true"}, {"id": "a", "command": "true"}], {}, "duplicate job id"),
        ([{"id": "a", "command": "true", "dependencies": "b"}], {}, "expected a list of job ids"),
        ([{"id": "a", "command": "true"}], {"inherit_shell_env": "some"}, "inherit_shell_env"),
        ([{"id": "a", "command": "true", "env_variables": {"1X": "v"}}], {}, "invalid variable"),
        (
            [{"id": "a", "command": "true", "dependencies": [{"kind": "x"}]}],
            {},
            'jobs[0] (a).dependencies[0]: expected a job id or a plugin dependency {"type"',
        ),
        ([{"id": "a", "command": "true"}], {"working_dir": "nowhere"}, "is not an existing folder"),
        ([{"id": "a", "command": "true"}], {"dependency_plugins": "p.py"}, "dependency_plugins"),
    ],
)
def test_invalid_configs_exit_1_naming_the_key_and_run_nothing(
    ex: Executioner, jobs: list[dict[str, Any]], top: dict[str, Any], message: str
) -> None:
    result = ex.run(jobs, **top)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(ex.db).exists() or not ex("--list-runs").stdout.strip().count("\n")


def test_usage_errors_exit_2(ex: Executioner) -> None:
    assert ex("--resume-failed-only").returncode == 2
    assert ex("--workers", "x").returncode == 2


def test_parallel_workers_overlap_and_sequential_runs_one_at_a_time(ex: Executioner) -> None:
    jobs = [{"id": n, "command": stamp(n, 0.5)} for n in ("p", "q")]
    assert ex.run(jobs, "--parallel", "--workers", "2").returncode == 0
    (p0, p1), (q0, q1) = span(ex.folder, "p"), span(ex.folder, "q")
    assert p0 < q1 and q0 < p1  # overlapped
    assert ex.run(jobs, "--sequential", parallel=True, max_workers=2).returncode == 0
    (p0, p1), (q0, q1) = span(ex.folder, "p"), span(ex.folder, "q")
    assert p1 <= q0 or q1 <= p0


def test_a_free_worker_takes_the_next_ready_job_without_waiting_for_a_wave(
    ex: Executioner,
) -> None:
    jobs = [
        {"id": "slow", "command": stamp("slow", 1.5)},
        {"id": "fast", "command": stamp("fast")},
        {"id": "next", "command": stamp("next"), "dependencies": ["fast"]},
    ]
    assert ex.run(jobs, "--parallel", "--workers", "2").returncode == 0
    assert span(ex.folder, "next")[0] < span(ex.folder, "slow")[1]


def test_retries_follow_exit_codes_and_statuses(ex: Executioner) -> None:
    jobs = [
        {"id": "one", "command": "exit 1", "max_retries": 2, "retry_delay": 0},
        {"id": "three", "command": "exit 3", "max_retries": 2, "retry_delay": 0},
        {
            "id": "any",
            "command": "exit 3",
            "max_retries": 1,
            "retry_delay": 0,
            "retry_on_status": ["FAILED"],
        },
        {
            "id": "flaky",
            "command": "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 1 ]",
            "max_retries": 3,
            "retry_delay": 0.1,
            "retry_backoff": 2,
        },
    ]
    result = ex.run(jobs, "--continue-on-error")
    assert result.returncode == 1
    states = ex.states(run_id(result.stdout))
    assert states["one"] == (State.FAILED, 3)
    assert states["three"] == (State.FAILED, 1)  # 3 is not in retry_on_exit_codes [1]
    assert states["any"] == (State.FAILED, 2)
    assert states["flaky"] == (State.SUCCESS, 2)


def test_environment_precedence_interpolation_and_inheritance(
    ex: Executioner, ordo_env: dict[str, str]
) -> None:
    ex.env = {**ordo_env, "FROM_SHELL": "shell", "LEVEL": "shell"}
    jobs = [
        {
            "id": "show",
            "command": 'echo "$LEVEL $APP_ONLY $JOB_PATH ${FROM_SHELL:-none}" > env.out',
            "env_variables": {"LEVEL": "job", "JOB_PATH": "${ROOT}/job"},
        }
    ]
    app_env = {"LEVEL": "app", "ROOT": "/data", "APP_ONLY": "${ROOT}/app"}
    assert ex.run(jobs, env_variables=app_env).returncode == 0
    assert (ex.folder / "env.out").read_text() == "job /data/app /data/job shell\n"
    assert ex.run(jobs, "--env", "LEVEL=cli,ROOT=/cli", env_variables=app_env).returncode == 0
    # the app level is frozen at load: --env changes the job's ${ROOT}, not the app's
    assert (ex.folder / "env.out").read_text() == "cli /data/app /cli/job shell\n"
    assert ex.run(jobs, env_variables=app_env, inherit_shell_env=False).returncode == 0
    assert (ex.folder / "env.out").read_text() == "job /data/app /data/job none\n"
    listed = ["FROM_SHELL", "PATH"]
    assert ex.run(jobs, env_variables=app_env, inherit_shell_env=listed).returncode == 0
    assert (ex.folder / "env.out").read_text().endswith(" shell\n")


def test_pre_and_post_checks(ex: Executioner) -> None:
    (ex.folder / "ora.log").write_text("fine\nORA-00942: table or view does not exist\n")
    jobs = [
        {
            "id": "guarded",
            "command": "touch ran",
            "pre_checks": [{"name": "check_file_exists", "params": {"path": "missing.csv"}}],
        },
        {
            "id": "sql",
            "command": "echo ok",
            "post_checks": [{"name": "check_no_ora_errors", "params": {"log_file": "*.log"}}],
        },
        {
            "id": "nolog",
            "command": "echo ok",
            "post_checks": [
                {"name": "check_no_ora_or_sp2_errors", "params": {"log_file": "none.log"}}
            ],
        },
        {
            "id": "good",
            "command": "echo fine > good.txt",
            "post_checks": [{"name": "check_file_exists", "params": {"path": "good.txt"}}],
        },
    ]
    result = ex.run(jobs, "--continue-on-error")
    assert result.returncode == 1
    states = ex.states(run_id(result.stdout))
    assert states["guarded"][0] is State.FAILED and not (ex.folder / "ran").exists()
    assert states["sql"][0] is State.FAILED
    assert states["nolog"][0] is State.FAILED  # a missing log fails it
    assert states["good"] == (State.SUCCESS, 1)
    assert "ora.log:2 matches 'ORA-'" in result.stdout


def test_skip_and_continue_on_error(ex: Executioner) -> None:
    jobs = [
        {"id": "a", "command": "exit 1"},
        {"id": "b", "command": "touch b.done"},
        {"id": "c", "command": "touch c.done", "dependencies": ["s"]},
        {"id": "s", "command": "touch s.done"},
    ]
    result = ex.run(jobs, "--skip", "s", "--skip", "ghost", "--continue-on-error")
    assert result.returncode == 1  # a failed job always makes it 1
    assert field(result.stdout, "Jobs Skipped") == 2  # unknown ids count, as in the engine
    assert (ex.folder / "b.done").exists() and (ex.folder / "c.done").exists()
    assert not (ex.folder / "s.done").exists()


def test_resume_runs_failed_and_unrun_jobs_and_mark_success_flips_a_failure(
    ex: Executioner,
) -> None:
    jobs = [
        {"id": "a", "command": "echo a >> a.count"},
        {"id": "b", "command": "[ -e fixed ]", "dependencies": ["a"]},
        {"id": "c", "command": "echo c >> c.count", "dependencies": ["b"]},
        {"id": "m", "command": "exit 9"},
    ]
    first = ex.run(jobs)
    assert first.returncode == 1
    rid = run_id(first.stdout)
    # queued a, m; a's success queues b after m; m fails: the run stops before b
    assert ex.states(rid)["b"] == (State.SKIPPED, 0)
    (ex.folder / "fixed").touch()
    cancelled = ex("--mark-success", "-r", str(rid), "-j", "m", stdin="n\n")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    marked = ex("--mark-success", "-r", str(rid), "-j", "m", stdin="y\n")
    assert marked.returncode == 0, marked.stderr
    assert "marked 1 job SUCCESS (m)" in marked.stdout
    again = ex("-c", str(ex.folder / "jobs.json"), "--resume-from", str(rid))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"Run ID: {rid} (Attempt 2)" in again.stdout
    # a and m are taken over as successful: completed, and skipped in this attempt
    assert (field(again.stdout, "Jobs Completed"), field(again.stdout, "Jobs Skipped")) == (4, 2)
    assert (ex.folder / "a.count").read_text() == "a\n"  # kept, not run again
    assert (ex.folder / "c.count").read_text() == "c\n"
    states = ex.states(rid)
    assert states["b"] == (State.SUCCESS, 1) and states["m"][0] is State.SUCCESS
    done = ex("-c", str(ex.folder / "jobs.json"), "--resume-from", str(rid))
    assert done.returncode == 0 and "already succeeded: nothing to resume" in done.stderr
    assert f"Run ID: {rid} (Attempt 3)" in done.stdout  # a new attempt, every job skipped
    assert (field(done.stdout, "Jobs Completed"), field(done.stdout, "Jobs Skipped")) == (4, 4)
    assert (ex.folder / "a.count").read_text() == "a\n"
    listed = ex("--list-runs", "app")
    assert f"{rid:>6}        3  app" in listed.stdout  # the new attempt is stored: 3
    again = ex("-c", str(ex.folder / "jobs.json"), "--resume-from", str(rid))
    assert f"Run ID: {rid} (Attempt 4)" in again.stdout
    unknown = ex("-c", str(ex.folder / "jobs.json"), "--resume-from", "999")
    assert unknown.returncode == 1 and "no Executioner run has that id" in unknown.stderr


def test_security_policy_and_allow_shell(ex: Executioner) -> None:
    risky = [{"id": "root", "command": "sudo true"}]
    blocked = ex.run(risky, security_policy="strict")
    assert blocked.returncode == 1
    assert "job 'root': the command matches the dangerous pattern sudo" in blocked.stderr
    piped = ex.run([{"id": "p", "command": "curl -s http://x | sh"}], security_policy="strict")
    assert "curl or wget piped to a shell" in piped.stderr and piped.returncode == 1
    warned = ex.run([{"id": "w", "command": "echo sudo-less; true"}], security_policy="warn")
    assert warned.returncode == 0
    noshell = ex.run([{"id": "n", "command": "echo a | wc"}], allow_shell=False)
    assert noshell.returncode == 1 and "uses shell syntax '|'" in noshell.stderr
    argv = ex.run([{"id": "n", "command": "touch 'two words'"}], allow_shell=False)
    assert argv.returncode == 0 and (ex.folder / "two words").exists()


def test_secret_variables_are_masked_in_every_log(ex: Executioner) -> None:
    jobs = [{"id": "leak", "command": "echo pw=$DB_PASSWORD tok=$API_TOKEN"}]
    env = {"DB_PASSWORD": "hunter22", "API_TOKEN": "t0k3n-value"}
    result = ex.run(jobs, env_variables=env)
    assert result.returncode == 0
    rid = run_id(result.stdout)
    text = (ex.folder / "logs" / f"executioner.app.job-leak.run-{rid}.log").read_text()
    assert "pw=**** tok=****" in text and "hunter22" not in text
    logs = subprocess.run(
        [*ex.cmd, "logs", str(rid), "--db", ex.db], env=ex.env, capture_output=True, text=True
    )
    assert "hunter22" not in logs.stdout and "****" in logs.stdout


def test_the_report_is_mailed_with_the_job_logs_and_a_mail_error_changes_nothing(
    ex: Executioner, smtp: tuple[int, list[Message]]
) -> None:
    port, got = smtp
    jobs = [
        {"id": "ok", "command": "echo fine"},
        {"id": "bad", "command": "exit 2", "description": "breaks"},
        {"id": "after", "command": "true", "dependencies": ["bad"]},
    ]
    mail = {"email_address": "ops@example.com", "smtp_server": "127.0.0.1", "smtp_port": port}
    result = ex.run(jobs, **mail)
    assert result.returncode == 1
    rid = run_id(result.stdout)
    assert len(got) == 1
    letter = got[0]
    assert letter["Subject"] == f"[app] Run #{rid} FAILURE"
    assert letter["To"] == "ops@example.com"
    parts = list(letter.walk())
    body = next(
        p for p in parts if p.get_filename() is None and p.get_content_type() == "text/plain"
    )
    text = body.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Jobs Failed: 1" in text and "  - bad: breaks" in text and "  - after:" in text
    names = sorted(p.get_filename() for p in parts if p.get_filename())
    assert f"executioner.app.job-ok.run-{rid}.log" in names
    quiet = ex.run([{"id": "ok", "command": "true"}], **mail)
    assert quiet.returncode == 0 and len(got) == 1  # email_on_success is false by default
    ex.run([{"id": "ok", "command": "true"}], email_on_success=True, **mail)
    assert got[-1]["Subject"].endswith("SUCCESS")
    closed = {**mail, "smtp_port": 1}  # nothing listens there
    broken = ex.run(jobs, **closed)
    assert broken.returncode == 1 and "could not send the report" in broken.stderr
    ok = ex.run([{"id": "ok", "command": "true"}], email_on_success=True, **closed)
    assert ok.returncode == 0


def test_dry_run_prints_the_plan_and_stores_nothing(ex: Executioner) -> None:
    result = ex.run(
        [{"id": "a", "command": "touch x"}, {"id": "b", "command": "true", "dependencies": ["a"]}],
        "--dry-run",
        "--skip",
        "a",
    )
    assert result.returncode == 0
    assert "  1. a [SKIPPED]: touch x" in result.stdout
    assert "b (after a)" in result.stdout and not (ex.folder / "x").exists()
    assert ex("--list-runs").stdout.count("\n") == 1  # the header only
