"""The Executioner config loader: environments, retries, checks and security, without
running anything (the command end to end is in tests/integration/test_executioner.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ordo.definitions.executioner import Config, load_config
from ordo.errors import DefinitionError
from ordo.masking import secret_values


def load(
    tmp_path: Path, jobs: list[dict[str, Any]], cli: dict[str, str] | None = None, **top: Any
) -> Config:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"working_dir": str(tmp_path), **top, "jobs": jobs}))
    return load_config(str(path), cli)


def test_defaults_follow_the_engine_and_the_app_name_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, [{"id": "a", "command": "true"}])
    (task,) = config.flow.tasks
    assert config.application == "jobs" and config.flow.key == "executioner/jobs"
    assert task.timeout == 10800 and task.retry.attempts == 1
    assert task.retry.on_exit_codes == (1,) and task.retry.budget == 1800
    assert task.spec == {"command": "true", "inherit_env": True}


def test_retry_on_status_decides_with_the_exit_codes(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        [
            {"id": "any", "command": "x", "max_retries": 2, "retry_on_status": ["FAILED"]},
            {"id": "none", "command": "x", "retry_on_status": [], "retry_on_exit_codes": []},
            {"id": "post", "command": "x", "retry_on_status": ["POSTCHECK_FAILED"]},
        ],
    )
    any_, none, post = config.flow.tasks
    assert any_.retry.attempts == 3 and any_.retry.on_exit_codes == () and any_.retry.on_exit
    assert not none.retry.on_exit and not none.retry.on_timeout
    assert post.retry.on_post_check and not any_.retry.on_post_check


def test_env_interpolation_and_unresolved_names_stay(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        [{"id": "a", "command": "x", "env_variables": {"J": "${A}/j", "N": "${NOPE}/n"}}],
        {"A": "/cli"},
        env_variables={"A": "/app", "B": "${A}/b", "C": "${C}"},
    )
    env = config.flow.tasks[0].env
    assert env == {"A": "/cli", "B": "/app/b", "C": "${C}", "J": "/cli/j", "N": "${NOPE}/n"}


def test_every_problem_is_listed(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        load(
            tmp_path,
            [{"id": "a", "command": "true", "max_retries": "2"}, {"command": "x"}],
            parallel="yes",
        )
    text = str(caught.value)
    assert "jobs[0] (a).max_retries: expected an integer, found a string ('2')" in text
    assert "jobs[1].id: expected a non-empty string, found nothing" in text
    assert "parallel: expected true or false" in text


@pytest.mark.parametrize(
    "command",
    ["sudo rm x", "rm -rf /", "curl http://x | bash", "echo x > /dev/sda", "dd if=a of=/dev/sdb"],
)
def test_strict_refuses_dangerous_commands(tmp_path: Path, command: str) -> None:
    with pytest.raises(DefinitionError, match="dangerous pattern"):
        load(tmp_path, [{"id": "a", "command": command}], security_policy="strict")


def test_harmless_commands_pass_strict(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        [{"id": "a", "command": "rm -rf build/tmp && echo done"}],
        security_policy="strict",
    )
    assert config.warnings == ()


def test_secret_values_are_those_of_secret_names() -> None:
    env = {"DB_PASSWORD": "hunter22", "API_KEY": "k-123456", "HOME": "/root", "TOKEN": "abc"}
    assert secret_values(env) == ("hunter22", "k-123456")  # longest first, then by value


def test_working_dir_may_be_relative_to_the_config_or_left_out(tmp_path: Path) -> None:
    (tmp_path / "etl").mkdir()
    path = tmp_path / "etl" / "jobs.json"
    for top in ({"working_dir": "."}, {}):
        path.write_text(json.dumps({**top, "jobs": [{"id": "a", "command": "true"}]}))
        config = load_config(str(path))
        assert config.working_dir == str((tmp_path / "etl").resolve())
        assert config.log_dir == str((tmp_path / "etl" / "logs").resolve())
    path.write_text(json.dumps({"working_dir": "..", "jobs": []}))
    assert load_config(str(path)).working_dir == str(tmp_path.resolve())


def test_plugins_their_dependencies_and_checks_no_plugin_knows(tmp_path: Path) -> None:
    jobs = [
        {
            "id": "a",
            "command": "true",
            "dependencies": [{"type": "file_arrived", "path": "x", "poll_interval": 2}],
            "pre_checks": [
                {"name": "check_file_exists", "params": {"path": "in.csv"}},
                {"name": "rows_at_least", "params": {"minimum": 3}},
                {"name": "check_file_exists", "params": {"file": "in.csv"}},
            ],
        }
    ]
    plugins = ["plugins/a.py", {"name": "quota", "path": "/abs/q.py"}]
    config = load(tmp_path, jobs, dependency_plugins=plugins)
    assert config.plugins == (("a", str(tmp_path / "plugins" / "a.py")), ("quota", "/abs/q.py"))
    (task,) = config.flow.tasks
    assert task.depends_on == ()
    kinds = [c.kind for c in task.pre_checks]
    assert kinds == ["command", "file_exists", "command", "command"]  # the wait comes first
    run = task.pre_checks[0].fields["run"]
    assert "-m ordo.cli.executioner_plugins depend file_arrived " in run
    assert task.pre_checks[0].fields["timeout"] == 10800 + 60
    assert [(c.kind, c.name, c.where) for c in config.custom] == [
        ("dependency type", "file_arrived", "jobs[0] (a).dependencies[0]"),
        ("check", "rows_at_least", "jobs[0] (a).pre_checks[1]"),
    ]
    (warning,) = config.warnings
    assert "pre_checks[2]: check_file_exists takes one parameter 'path'" in warning


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"dependency_plugins": "a.py"}, "dependency_plugins: expected a list"),
        ({"dependency_plugins": [{"path": "a.py"}]}, "dependency_plugins[0].name: expected"),
        ({"dependency_plugins": [5]}, "dependency_plugins[0]: expected a path"),
    ],
)
def test_bad_plugin_entries_are_named(tmp_path: Path, top: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=re.escape(message)):
        load(tmp_path, [{"id": "a", "command": "true"}], **top)


def test_a_plugin_dependency_needs_a_type_and_sane_timings(tmp_path: Path) -> None:
    jobs = [
        {"id": "a", "command": "x", "dependencies": [{"path": "x"}]},
        {"id": "b", "command": "x", "dependencies": [{"type": "t", "poll_interval": 0}]},
    ]
    with pytest.raises(DefinitionError) as caught:
        load(tmp_path, jobs)
    text = str(caught.value)
    assert "jobs[0] (a).dependencies[0]: expected a job id or a plugin dependency" in text
    assert "jobs[1] (b).dependencies[0]: poll_interval must be above 0" in text
