"""The edges (CLI, REST API, web UI) change executions and flows only through the
commands of ``ordo.services`` (start, kill, restart, replay, resume, mark, save,
register), never by calling a store method that writes: the rule import-linter cannot
see (a method call needs no import), checked by reading their code."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ordo"
EDGES = ("cli", "api", "ui")

#: Store writes that are plain configuration, with no rule to apply: the edges keep them.
CONFIGURATION = {
    "set_secret",
    "remove_secret",
    "add_token",
    "revoke_token",
    "token_used",
    "save_connection",
    "remove_connection",
    "upgrade",
    "collect_events",
    "collect_garbage",
}


def store_writes() -> set[str]:
    """The store's public methods that open a write transaction."""
    found = set()
    for path in (SRC / "store").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for fn in node.body:
                    if (
                        isinstance(fn, ast.FunctionDef)
                        and not fn.name.startswith("_")
                        and "self.db.transaction()" in ast.unparse(fn)
                    ):
                        found.add(fn.name)
    return found


def test_the_scan_finds_the_store_writes() -> None:
    writes = store_writes()
    for name in ("create_execution", "kill_execution", "restart_execution", "mark_task_run"):
        assert name in writes


def method_calls(found: Callable[[str, str], bool]) -> list[str]:
    """``path:line: call`` of each method call in the edges' code for which ``found``
    (the called object's text, the method's name) is true."""
    calls = []
    for edge in EDGES:
        for path in sorted((SRC / edge).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and found(ast.unparse(node.func.value), node.func.attr)
                ):
                    calls.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node.func)}")
    return calls


def test_the_edges_call_no_store_write_but_configuration() -> None:
    forbidden = store_writes() - CONFIGURATION
    calls = method_calls(lambda called, name: name in forbidden and "store" in called)
    assert calls == [], "call ordo.services instead"


#: What the edges may ask of ``ordo.engine`` directly: reading and checking, no change.
ENGINE_READS = {"read_flow_file", "saved_inputs", "check_children"}


def test_the_edges_ask_the_engine_only_to_read() -> None:
    """Starting, registering and the rest go through ``ordo.services`` (its checks:
    ``allow_manual``, queue names, ...), not straight to the engine."""
    calls = method_calls(lambda called, name: called == "engine" and name not in ENGINE_READS)
    assert calls == [], "call ordo.services instead"
