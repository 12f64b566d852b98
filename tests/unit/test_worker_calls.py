"""A handler's JSON requests become typed requests (ordo.worker.requests.parse), or an
error answer naming what is wrong."""

from __future__ import annotations

from ordo.worker.requests import (
    Connect,
    ConnectSetup,
    EndStep,
    LookUp,
    ReadSecret,
    StartChild,
    TaskStep,
    WaitChild,
    WaitStep,
    parse,
)


def test_each_request_of_ordo_this_becomes_a_typed_request() -> None:
    assert parse({"op": "flow", "flow": "etl", "revision": "2", "inputs": {"day": 1}}) == (
        StartChild("etl", 2, {"day": 1})
    )
    assert parse({"op": "flow", "flow": "etl", "revision": None, "inputs": None}) == (
        StartChild("etl", None, {})
    )
    assert parse({"op": "wait", "id": 7}) == WaitChild(7)
    assert parse({"op": "connect", "connection": "wh", "type": None, "fields": {"query": "q"}}) == (
        Connect(ConnectSetup("wh", None, {"query": "q"}))
    )
    assert parse({"op": "secret", "name": "TOKEN"}) == ReadSecret("TOKEN")
    request = {"op": "execution", "id": None}
    assert parse(request) == LookUp(request)


def test_a_request_ordo_does_not_know_is_answered_with_an_error() -> None:
    assert parse({"op": "launch_missiles"}) == {"error": "unknown request 'launch_missiles'"}
    assert parse({}) == {"error": "unknown request None"}
    assert parse({"op": "wait", "id": "seven"}) == {
        "error": "a wait request's id must be an integer, found 'seven'"
    }
    assert parse({"op": "flow", "revision": 1}) == {"error": "a flow request needs the flow's id"}
    assert parse({"op": "flow", "flow": "etl", "revision": "x"}) == {
        "error": "a flow request's revision must be an integer, found 'x'"
    }


def test_a_flow_functions_step_requests_become_typed_requests() -> None:
    task = {"op": "task", "number": 3, "name": "load", "args": [1], "kwargs": {}}
    assert parse({**task, "wait": True, "here": True}) == (
        TaskStep(3, "load", [1], {}, None, wait=True, here=True)
    )
    assert parse({**task, "here": True}) == TaskStep(3, "load", [1], {})  # a submit: never
    assert parse({"op": "task_wait", "run": 9, "also": [10, "11"]}) == WaitStep(9, (10, 11))
    assert parse({"op": "task_wait", "run": 9}) == WaitStep(9)
    reply = {"ok": True, "result": {"return": 2}}
    assert parse({"op": "task_end", "attempt": 5, "reply": reply, "tell": True}) == (
        EndStep(5, reply, tell=True)
    )
    assert parse({"op": "task_end", "attempt": 5}) == {
        "error": "a task_end request needs the task's reply, a mapping"
    }
    assert parse({"op": "task_wait", "run": 9, "also": 10}) == {
        "error": "a task_wait request's also must be a list of task run ids"
    }
