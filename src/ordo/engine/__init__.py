"""The engine: what happens to executions and why.

- :mod:`ordo.engine.policy` decides: when a task run retries, how an execution ends,
  how a for_each task run ends, whether an execution may start under its flow's limit,
  what a restart runs again and what a mark reopens. Plain functions over plain facts;
  the store asks them inside its transactions (:class:`ordo.store.ports.Decisions`)
  and never imports them.
- :mod:`ordo.engine.start` registers flows, starts executions and children, and turns
  a claim into what a runner needs (templates rendered against stored outputs).
"""

from __future__ import annotations

from ordo.engine import policy as _policy
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
from ordo.store.ports import Decisions

#: The engine's policy, as the store's port types it (mypy checks the module fits).
POLICY: Decisions = _policy

__all__ = [
    "MAX_DEPTH",
    "POLICY",
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
