"""Executioner plugins (``ordo.cli.executioner_plugins``): importing them, what they
register, calling checks and waiting on dependency types, with a fake clock; the
command end to end is in tests/integration/test_executioner_engine.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ordo.cli.executioner_plugins import PluginError, load_plugins, run_check, wait_for

PLUGIN = """
def rows(path, minimum):
    return minimum <= 3, f"3 rows in {path}"

def boom():
    raise ValueError("bad data")

def ready(after):
    global calls
    calls += 1
    return calls > after

calls = 0
CHECKS = {"rows": rows, "boom": boom}
DEPENDENCY_TYPES = {"ready": ready, "broken": boom}
"""


def plugin(tmp_path: Path, name: str, text: str) -> tuple[str, str]:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return name, str(path)


def test_checks_answer_with_a_reason(tmp_path: Path) -> None:
    registry = load_plugins([plugin(tmp_path, "p", PLUGIN)])
    assert run_check(registry, "rows", {"path": "a.csv", "minimum": 2}) == (True, "3 rows in a.csv")
    assert run_check(registry, "rows", {"path": "a.csv", "minimum": 9})[0] is False
    assert run_check(registry, "boom", {}) == (False, "ValueError: bad data")
    ok, said = run_check(registry, "rows", {"file": "a"})
    assert not ok and "unexpected keyword argument 'file'" in said
    ok, said = run_check(registry, "row", {})
    assert not ok and said.startswith("unknown check 'row' (did you mean 'rows'?)")
    assert run_check(registry, "check_file_exists", {"path": str(tmp_path / "p.py")})[0]


def test_a_dependency_is_asked_until_true_or_until_its_wait_is_over(tmp_path: Path) -> None:
    registry = load_plugins([plugin(tmp_path, "p", PLUGIN)])
    clock = [0.0]
    said: list[str] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    def ask(after: int, max_wait: float) -> tuple[bool, str]:
        return wait_for(
            registry, "ready", {"after": after}, 5, max_wait, said.append, sleep, lambda: clock[0]
        )

    assert ask(2, 60) == (True, "dependency ready(after=2) satisfied")
    assert clock[0] == 10 and said == [
        "dependency ready(after=2) not satisfied yet: asking every 5s"
    ]
    ok, why = ask(100, 12)
    assert not ok and why == "dependency ready(after=100) not satisfied after 12s (3 looks)"
    ok, why = wait_for(registry, "broken", {}, 5, 60, said.append, sleep)
    assert not ok and why == "dependency broken() failed: ValueError: bad data"
    ok, why = wait_for(registry, "nope", {}, 5, 60, said.append, sleep)
    assert (
        why == "dependency type 'nope' is not registered by any plugin (registered: broken, ready)"
    )


def test_the_executioners_plugin_class_is_a_type_named_after_its_entry(tmp_path: Path) -> None:
    text = "class Q:\n    def __init__(self, params):\n        self.p = params\n"
    text += "    def check(self):\n        return self.p.get('left', 0) > 0\nPLUGIN_CLASS = Q\n"
    registry = load_plugins([plugin(tmp_path, "quota", text)])
    assert wait_for(registry, "quota", {"left": 1}, 1, 0, print)[0]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["x = (\n"], "a.py: import failed: SyntaxError"),
        (["raise RuntimeError('no db')\n"], "a.py: import failed: RuntimeError: no db"),
        (["CHECKS = {'check_file_exists': len}\n"], "'check_file_exists' is a built-in check"),
        (["DEPENDENCY_TYPES = ['x']\n"], "a.py: DEPENDENCY_TYPES must map names to functions"),
        (
            ["CHECKS = {'c': len}\n", "CHECKS = {'c': len}\n"],
            "b.py: check 'c' is registered by",
        ),
    ],
)
def test_a_plugin_that_cannot_be_used_is_named(
    tmp_path: Path, texts: list[str], message: str
) -> None:
    entries = [plugin(tmp_path, name, text) for name, text in zip("ab", texts, strict=False)]
    with pytest.raises(PluginError, match=re.escape(message)):
        load_plugins(entries)


def test_a_missing_plugin_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"nope\.py: dependency plugin not found"):
        load_plugins([("nope", str(tmp_path / "nope.py"))])
