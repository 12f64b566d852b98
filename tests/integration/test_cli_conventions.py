"""What a newcomer expects of a command line: ``--version``, shell completion, ``--json``
where a program reads the output, usage of the command given, "did you mean", plain
English in counts and reasons, hints when nothing will run a submitted execution, log
options of the long-running commands, and the store named in ``settings.toml``."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from support import patient, wait_for

from ordo import __version__


def ordo(
    cmd: list[str], env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def two(tmp_path: Path) -> Path:
    return write(
        tmp_path / "two.yaml",
        """
        id: two
        tasks:
          - id: extract
            type: shell
            command: echo extracted
          - id: transform
            type: shell
            depends_on: [extract]
            command: exit 3
        """,
    )


def test_version_prints_the_version(ordo_cmd: list[str], ordo_env: dict[str, str]) -> None:
    result = ordo(ordo_cmd, ordo_env, "--version")
    assert (result.returncode, result.stdout) == (0, f"ordo {__version__}\n")


def complete(script: str, words: list[str]) -> list[str]:
    """What bash's completion function offers after ``words`` (the last one being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _ordo; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.split()


def test_bash_completion_loads_and_completes_commands_options_and_choices(
    ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    result = ordo(ordo_cmd, ordo_env, "completion", "bash")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "complete -o filenames -F _ordo ordo" in script
    assert complete(script, ["ordo", "ex"]) == ["executions", "executioner"]
    assert {"list", "show", "save", "unsave", "history"} <= set(
        complete(script, ["ordo", "--db", "x.db", "executions", ""])
    )
    assert complete(script, ["ordo", "executions", "list", "--st"]) == ["--state"]
    assert "FAILED" in complete(script, ["ordo", "executions", "list", "--state", ""])
    assert complete(script, ["ordo", "completion", "z"]) == ["zsh"]
    assert "--json" in complete(script, ["ordo", "validate", "--"])


#: How each shell is asked what it would offer after ``ordo executions `` (the script in
#: $SCRIPT): zsh's function is called with compadd replaced by print; fish answers
#: ``complete -C``.
ASK = {
    "zsh": "compdef() { :; }; source $SCRIPT; compadd() { [[ $1 == -- ]] && shift; "
    'print -l -- "$@" }; words=(ordo executions ""); CURRENT=3; _ordo',
    "fish": "source $SCRIPT; complete -C 'ordo executions '",
}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts_complete_commands(
    ordo_cmd: list[str], ordo_env: dict[str, str], shell: str, tmp_path: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "completion", shell)
    assert result.returncode == 0, result.stderr
    for command in ("run", "executions list", "flows history", "completion"):
        assert command in result.stdout
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed: only the script's text is checked")
    script = tmp_path / f"ordo.{shell}"
    script.write_text(result.stdout)
    checked = subprocess.run([binary, "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    flags = ["-f", "-c"] if shell == "zsh" else ["--no-config", "-c"]
    asked = subprocess.run(
        [binary, *flags, ASK[shell]],
        env={**ordo_env, "SCRIPT": str(script)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    offered = [line.split("\t")[0] for line in asked.stdout.split("\n") if line]
    assert {"list", "show", "save", "unsave"} <= set(offered), asked.stdout + asked.stderr


def test_validate_and_plan_print_json(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.yaml", "id: bad\ntasks:\n  - id: a\n    type: shel\n")
    result = ordo(ordo_cmd, ordo_env, "validate", str(two), str(bad), "--json")
    assert result.returncode == 2 and result.stderr == ""
    good, wrong = json.loads(result.stdout)
    assert good == {
        "file": str(two),
        "ok": True,
        "flow": "default/two",
        "tasks": 2,
        "warnings": [],
    }
    assert wrong["ok"] is False
    [error] = wrong["errors"]
    assert (error["file"], error["line"], error["field"]) == (str(bad), 4, "tasks[0].type")
    assert "did you mean 'shell'" in error["message"]
    plan = ordo(ordo_cmd, ordo_env, "plan", str(two), "--json")
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["flow"] == "default/two"
    assert [[t["task"] for t in wave] for wave in doc["waves"]] == [["extract"], ["transform"]]
    assert doc["waves"][1][0] == {
        "task": "transform",
        "type": "shell",
        "depends_on": ["extract"],
        "fields": {"command": "exit 3"},
    }


def test_one_task_is_singular(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    one = write(
        tmp_path / "one.yaml", "id: one\ntasks:\n  - {id: a, type: shell, command: 'true'}\n"
    )
    assert (
        ordo(ordo_cmd, ordo_env, "validate", str(one)).stdout
        == f"{one}: OK (default/one, 1 task)\n"
    )
    assert "(1 task); nothing runs" in ordo(ordo_cmd, ordo_env, "plan", str(one)).stdout


def test_run_json_keeps_progress_off_standard_output(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path
) -> None:
    result = ordo(ordo_cmd, ordo_env, "run", str(two), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["state"] == "FAILED"  # nothing but the document
    assert "extract RUNNING (attempt 1)" in result.stderr
    assert "transform FAILED: exit code 3" in result.stderr
    quiet = ordo(ordo_cmd, ordo_env, "run", str(two), "--json", "-q")
    assert json.loads(quiet.stdout)["state"] == "FAILED" and quiet.stderr == ""


def test_an_unknown_option_shows_the_usage_of_its_command(
    ordo_cmd: list[str], ordo_env: dict[str, str]
) -> None:
    result = ordo(ordo_cmd, ordo_env, "executions", "list", "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: ordo executions list ")
    assert "ordo executions list: error: unrecognized arguments: --bogus" in result.stderr
    run = ordo(ordo_cmd, ordo_env, "run", "x.yaml", "--wrokers", "2")
    assert run.stderr.startswith("usage: ordo run ")


def test_unknown_task_ids_get_the_same_did_you_mean(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path
) -> None:
    assert ordo(ordo_cmd, ordo_env, "run", str(two), "-q").returncode == 1
    for args in (
        ("replay", "1", "--from", "transfrom"),
        ("restart", "1", "--from", "transfrom"),
        ("logs", "1", "--task", "transfrom"),
        ("mark", "1", "transfrom", "success"),
        ("run", str(two), "--skip", "transfrom"),
    ):
        result = ordo(ordo_cmd, ordo_env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "has no task 'transfrom'" in result.stderr, (args, result.stderr)
        assert "(did you mean 'transform'?)" in result.stderr, (args, result.stderr)


def test_a_reason_names_its_task_once(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    flow = write(
        tmp_path / "s.yaml",
        """
        id: s
        tasks:
          - id: x
            type: shell
            command: echo {{ secret('nope') }}
        """,
    )
    result = ordo(ordo_cmd, ordo_env, "run", str(flow), "--json", "-q")
    reason = json.loads(result.stdout)["reason"]
    assert reason.startswith("task 'x' failed: unknown secret 'nope'"), reason


def test_detach_says_when_no_worker_serves_the_store(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path
) -> None:
    for args in (("run", str(two), "--detach"), ("submit", str(two))):
        result = ordo(ordo_cmd, ordo_env, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().isdigit()
        assert result.stderr.startswith("note: no worker serves this store"), result.stderr


def test_detach_is_quiet_when_a_live_worker_serves_the_queue(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path
) -> None:
    worker = subprocess.Popen(
        [*ordo_cmd, "worker", "--log-format", "json", "--workers", "1"],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = json.loads(worker.stderr.readline())  # it logs once it is registered
        assert first["level"] == "INFO" and first["logger"].startswith("ordo")
        assert "serving queues default" in first["message"]
        assert "time" in first
        result = ordo(ordo_cmd, ordo_env, "submit", str(two))
        assert result.returncode == 0 and result.stderr == "", result.stderr
        gpu = write(
            two.with_name("gpu.yaml"),
            "id: gpu\ntasks:\n  - {id: a, type: shell, command: 'true', queue: gpu}\n",
        )
        result = ordo(ordo_cmd, ordo_env, "submit", str(gpu))
        assert "note: no live worker serves queue gpu" in result.stderr
        assert "ordo worker -Q gpu" in result.stderr
    finally:
        worker.terminate()
        worker.communicate(timeout=patient(60))


def test_log_level_hides_info_lines(ordo_cmd: list[str], ordo_env: dict[str, str]) -> None:
    worker = subprocess.Popen(
        [*ordo_cmd, "worker", "--log-level", "warning", "--workers", "1"],
        env=ordo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            "the worker to register",
            lambda: "alive" in ordo(ordo_cmd, ordo_env, "workers", "list").stdout,
        )
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=patient(60))
    assert " INFO " not in err
    assert "--log-format {text,json}" in ordo(ordo_cmd, ordo_env, "server", "--help").stdout


def test_settings_may_name_the_store_below_db_and_ordo_db(
    ordo_cmd: list[str], ordo_env: dict[str, str], two: Path, tmp_path: Path
) -> None:
    home = Path(ordo_env["ORDO_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text('db = "named.db"\n')
    assert ordo(ordo_cmd, ordo_env, "submit", str(two)).returncode == 0
    assert (home / "named.db").exists() and not (home / "ordo.db").exists()
    env = {**ordo_env, "ORDO_DB": str(tmp_path / "env.db")}
    assert ordo(ordo_cmd, env, "submit", str(two)).returncode == 0
    assert (tmp_path / "env.db").exists()
    flag = tmp_path / "flag.db"
    assert ordo(ordo_cmd, env, "submit", str(two), "--db", str(flag)).returncode == 0
    listed = ordo(ordo_cmd, ordo_env, "executions", "list", "--json")
    assert [e["id"] for e in json.loads(listed.stdout)] == [1]  # only the first is in named.db
    (home / "settings.toml").write_text("db = 3\n")
    bad = ordo(ordo_cmd, ordo_env, "executions", "list")
    assert bad.returncode == 2 and "settings.toml: db: must be a string, got 3" in bad.stderr


def test_a_package_takes_triggers_and_a_wrong_one_is_located_in_its_flow_yaml(
    ordo_cmd: list[str], ordo_env: dict[str, str], tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "10_a.sh").write_text("echo a\n")
    (package / "flow.yaml").write_text(
        "id: pkg\ntriggers:\n  - {type: schedule, cron: '0 2 * * *'}\n"
    )
    assert ordo(ordo_cmd, ordo_env, "validate", f"{package}/").returncode == 0
    (package / "flow.yaml").write_text("id: pkg\ntriggers:\n  - {type: schedule, cron: 20****}\n")
    result = ordo(ordo_cmd, ordo_env, "validate", f"{package}/")
    assert result.returncode == 2
    assert "flow.yaml:3:28: triggers[0].cron: '20****': a cron expression has 5 fields" in (
        result.stderr
    )
    assert "did you mean '20 * * * *'?" in result.stderr
