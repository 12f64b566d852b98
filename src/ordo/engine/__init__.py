"""The engine: what happens to executions and why.

- :mod:`ordo.engine.policy` decides: when a task run retries, how an execution ends,
  how a for_each task run ends, whether an execution may start under its flow's limit,
  what a restart runs again and what a mark reopens. Plain functions over plain facts;
  the store asks them inside its transactions (:class:`ordo.store.ports.Decisions`)
  and never imports them: :func:`open_store` gives the store its policy.
- :mod:`ordo.engine.start` registers flows, starts executions and children, and turns
  a claim into what a runner needs (templates rendered against stored outputs).

Its names are loaded when first used: opening a store loads the policy, not the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ordo.engine.start import (
        MAX_DEPTH,
        Evaluator,
        Prepared,
        check_children,
        check_plan,
        connect_setup,
        decide_run_if,
        evaluate_once,
        execution_info,
        find_child_flow,
        look_up,
        prepare,
        read_flow_file,
        register_flow,
        replay_execution,
        restart_execution,
        save_execution,
        saved_inputs,
        start_child,
        start_execution,
        store_prepared,
        with_connection,
    )
    from ordo.store import Store
    from ordo.store.ports import Decisions

__all__ = [
    "MAX_DEPTH",
    "Evaluator",
    "Prepared",
    "check_children",
    "check_plan",
    "connect_setup",
    "decide_run_if",
    "evaluate_once",
    "execution_info",
    "find_child_flow",
    "look_up",
    "open_store",
    "policy_port",
    "prepare",
    "read_flow_file",
    "register_flow",
    "replay_execution",
    "restart_execution",
    "save_execution",
    "saved_inputs",
    "start_child",
    "start_execution",
    "store_prepared",
    "with_connection",
]


def policy_port() -> Decisions:
    """The engine's policy, as the store's port types it (mypy checks the module fits)."""
    from ordo.engine import policy

    port: Decisions = policy
    return port


def open_store(url: str, *, policy: Decisions | None = None) -> Store:
    """Open the store at ``url`` (see :func:`ordo.store.open_store`), deciding by the
    engine's policy (or ``policy``)."""
    from ordo.store import open_store as open_with

    return open_with(url, policy=policy or policy_port())


def __getattr__(name: str) -> object:  # (object: a name not declared above is an error)
    if name not in __all__:
        raise AttributeError(f"module 'ordo.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module("ordo.engine.start"), name)
    globals()[name] = value
    return value
