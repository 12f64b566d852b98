"""The CLI against a remote ``ordo server`` (``--server URL --token TOKEN``): the same
verbs through the REST API. ``run`` sends the flow file and starts it (waiting for its end
unless ``--detach``); ``emit``, ``kill``, ``restart``, ``replay``, ``mark``, ``executions
list|show``, ``flows list|add|next|activate|deactivate`` and ``logs`` map to their
routes. What the API answers with an error is printed as that error."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

from ordo import definitions, engine
from ordo.cli import deploy as deploy_cli
from ordo.cli import inspect as inspect_cli
from ordo.cli.common import parse_pairs, print_json, table
from ordo.cli.retention import run_option_fields
from ordo.cli.serving import flow_key, parse_data, print_emitted
from ordo.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
    NotFound,
    OrdoError,
    StoreError,
    UsageError,
)

TIMEOUT = 30.0
LOG_PAGE = 5000
ENDED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "SKIPPED")


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        if not server.startswith(("http://", "https://")):
            raise UsageError(
                f"--server: expected http://HOST:PORT or https://..., found {server!r}"
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server.rstrip("/")
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=TIMEOUT)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach ordo server {self.server}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _error(response: httpx.Response) -> OrdoError:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    lines = [str(body.get("detail", body))]
    lines += [
        f"  {p.get('field') or ''} line {p.get('line')}: {p['message']}"
        for p in body.get("problems", [])
        if p.get("line")
    ]
    error: OrdoError
    if response.status_code in (401, 403):
        error = ConfigError(f"server refused ({response.status_code}): " + "\n".join(lines))
    elif response.status_code >= 500:
        error = StoreError(f"server error ({response.status_code}): " + "\n".join(lines))
    else:
        error = UsageError("\n".join(lines))
    return error


def command(args: argparse.Namespace, server: str, token: str | None) -> int:
    client = Client(server, token)
    name = args.command
    if name == "flows":
        name = f"flows {args.action}"
    elif name == "executions":
        name = f"executions {args.action}"
    handler = HANDLERS.get(name)
    if handler is None:
        raise UsageError(
            f"ordo {name} does not work with --server; known there: {', '.join(HANDLERS)}"
        )
    return handler(client, args)


def sendable(file: str) -> tuple[str, bytes]:
    """The flow file's path and bytes, once it is valid here and references no file beside
    it: ``--server`` sends the flow file alone, and the server would not find a module,
    script or SQL file it names. UsageError says to deploy the folder instead."""
    path, data = engine.read_flow_file(file)
    prepared = definitions.prepare(path)
    if prepared.scripts:
        names = ", ".join(prepared.scripts)
        folder = os.path.dirname(path)
        raise UsageError(
            f"{file} references files beside it ({names}); --server sends only the flow "
            f"file, so the server could not run it. Deploy the folder where the server's "
            f"store is instead: ordo deploy {folder} --db STORE_URL, or ordo server "
            f"--flows {folder} --watch (see docs/deploying.md)"
        )
    return path, data


def _run(client: Client, args: argparse.Namespace) -> int:
    path, data = sendable(args.file)
    kind = "application/json" if path.endswith(".json") else "application/x-yaml"
    flow = client.call("POST", "/api/flows", content=data, headers={"Content-Type": kind})
    body = {
        "inputs": parse_pairs(args.input, "-i"),
        "labels": parse_pairs(args.label, "-l"),
        "dev": bool(getattr(args, "dev", False)),
        "skip": [t for item in args.skip for t in item.split(",") if t],
        "continue_on_error": args.continue_on_error,
        "revision": flow["revision"],  # the one just sent, whatever is stored after it
        **run_option_fields(args),
    }
    execution = client.call(
        "POST", f"/api/flows/{flow['namespace']}/{flow['id']}/executions", json=body
    )
    if args.detach:
        print(execution["id"])
        return EXIT_OK
    while execution["state"] not in ENDED:
        time.sleep(0.2)
        execution = client.call("GET", f"/api/executions/{execution['id']}")
    return _print_ended(client, execution["id"], args.json)


def _print_ended(client: Client, execution_id: int, as_json: bool) -> int:
    doc = client.call("GET", f"/api/executions/{execution_id}")
    if as_json:
        print_json(doc)
    else:
        print(
            table(
                ["TASK", "STATE", "ATTEMPTS", "REASON"],
                [
                    [r["task"], r["state"], str(len(r["attempts"])), r["reason"] or ""]
                    for r in doc["task_runs"]
                ],
            )
        )
        print(
            f"execution {doc['id']} {doc['namespace']}/{doc['flow']}: {doc['state']}"
            + (f" ({doc['reason']})" if doc["reason"] else "")
        )
    return EXIT_OK if doc["state"] in ("SUCCESS", "WARNING", "SKIPPED") else EXIT_FAILED


def _emit(client: Client, args: argparse.Namespace) -> int:
    doc = client.call("POST", f"/api/events/{args.type}", json=parse_data(args.data))
    return print_emitted(doc, args.type, args.json)


def _kill(client: Client, args: argparse.Namespace) -> int:
    doc = client.call("POST", f"/api/executions/{args.id}/kill")
    deadline = time.monotonic() + args.wait
    while doc["state"] == "KILLING" and time.monotonic() < deadline:
        time.sleep(0.1)
        doc = client.call("GET", f"/api/executions/{args.id}")
    print(f"execution {doc['id']} {doc['namespace']}/{doc['flow']}: {doc['state']}")
    return EXIT_OK if doc["state"] == "KILLED" else EXIT_FAILED


def _restart(client: Client, args: argparse.Namespace) -> int:
    body = {
        "from": args.from_task,
        "inputs": parse_pairs(args.input, "-i"),
        "latest": args.revision == "latest",
    }
    doc = client.call("POST", f"/api/executions/{args.id}/restart", json=body)
    print(f"execution {args.id} restarted: {', '.join(doc['run_again'])} run again")
    return EXIT_OK


def _replay(client: Client, args: argparse.Namespace) -> int:
    body = {
        "from": args.from_task,
        "inputs": parse_pairs(args.input, "-i"),
        "latest": args.revision == "latest",
    }
    doc = client.call("POST", f"/api/executions/{args.id}/replay", json=body)
    print(doc["id"])
    return EXIT_OK


def _mark(client: Client, args: argparse.Namespace) -> int:
    body = {"task": args.task, "state": args.state, "reason": args.reason}
    doc = client.call("POST", f"/api/executions/{args.id}/mark", json=body)
    print(f"task {doc['task']} of execution {args.id}: {doc['old']} -> {doc['new']}")
    return EXIT_OK


def _list(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        "limit": args.limit,
        "flow": args.flow,
        "state": args.state,
        "kind": getattr(args, "kind", None),
    }
    params = {k: v for k, v in params.items() if v}
    for flag in ("saved", "dev"):
        if getattr(args, flag, None) is not None:
            params[flag] = str(getattr(args, flag)).lower()
    if args.label:
        params["label"] = _labels(args.label)
    doc = client.call("GET", "/api/executions", params=params)
    if args.json:
        print_json(doc["items"])
        return EXIT_OK
    inspect_cli.print_executions(doc["items"])
    return EXIT_OK


def _history(client: Client, args: argparse.Namespace) -> int:
    rows = client.call("GET", f"/api/executions/{args.id}/history")
    if args.json:
        print_json(rows)
    else:
        inspect_cli.print_history(rows)
    return EXIT_OK


def _show(client: Client, args: argparse.Namespace) -> int:
    _print_ended(client, args.id, args.json)
    return EXIT_OK


def _labels(items: list[str]) -> list[str]:
    return [f"{k}={v}" for k, v in parse_pairs(items, "--label").items()]


def _flows(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"label": _labels(args.label)}
    if args.namespace:
        params["namespace"] = args.namespace
    rows = client.call("GET", "/api/flows", params=params)
    if args.json:
        print_json(rows)
        return EXIT_OK
    print(
        table(
            ["FLOW", "REVISION", "ACTIVE", "TASKS"],
            [
                [
                    f"{r['namespace']}/{r['id']}",
                    str(r["revision"]),
                    str(r["active"]).lower(),
                    str(len(r["tasks"])),
                ]
                for r in rows
            ],
        )
    )
    return EXIT_OK


def _flows_add(client: Client, args: argparse.Namespace) -> int:
    for file in args.files:
        path, data = sendable(file)
        kind = "application/json" if path.endswith(".json") else "application/x-yaml"
        doc = client.call("POST", "/api/flows", content=data, headers={"Content-Type": kind})
        print(f"{doc['namespace']}/{doc['id']}: revision {doc['revision']}")
    return EXIT_OK


def _flows_next(client: Client, args: argparse.Namespace) -> int:
    namespace, flow_id = flow_key(args.id)
    found = client.call(
        "GET", f"/api/flows/{namespace}/{flow_id}/next", params={"count": args.count}
    )
    for trigger in found:
        print(f"{trigger['trigger']}: {trigger['cron']} ({trigger['timezone']})")
        for at in trigger["times"]:
            print(f"  {at}")
    return EXIT_OK


def _flows_flag(client: Client, args: argparse.Namespace) -> int:
    namespace, flow_id = flow_key(args.id)
    client.call("POST", f"/api/flows/{namespace}/{flow_id}/{args.action}")
    print(f"flow {namespace}/{flow_id} {args.action}d")
    return EXIT_OK


def _flows_history(client: Client, args: argparse.Namespace) -> int:
    namespace, flow_id = flow_key(args.id)
    rows = client.call("GET", f"/api/flows/{namespace}/{flow_id}/revisions")
    deploy_cli.print_history(rows, args.json)
    return EXIT_OK


def _flows_show(client: Client, args: argparse.Namespace) -> int:
    namespace, flow_id = flow_key(args.id)
    if args.revision is None:
        newest = client.call("GET", f"/api/flows/{namespace}/{flow_id}")
        args.revision = newest["revision"]
    doc = client.call("GET", f"/api/flows/{namespace}/{flow_id}/revisions/{args.revision}")
    deploy_cli.print_revision(doc, args.json)
    return EXIT_OK


def _flows_diff(client: Client, args: argparse.Namespace) -> int:
    namespace, flow_id = flow_key(args.id)
    try:
        response = client.http.get(
            f"/api/flows/{namespace}/{flow_id}/diff", params={"from": args.old, "to": args.new}
        )
    except httpx.HTTPError as exc:
        raise StoreError(f"cannot reach ordo server {client.server}: {exc}") from None
    if response.status_code >= 400:
        raise _error(response)
    sys.stdout.write(response.text)
    return EXIT_OK


def _logs(client: Client, args: argparse.Namespace) -> int:
    """The lines as ``ordo logs`` prints them locally (``task#attempt`` on each), a page
    at a time; with ``--follow`` until the execution has ended."""
    after = 0
    while True:
        execution = client.call("GET", f"/api/executions/{args.id}")
        names, wanted = _attempt_names(execution, args)
        while True:
            page = client.call(
                "GET",
                f"/api/executions/{args.id}/logs",
                params={"after": after, "limit": LOG_PAGE},
            )
            for x in page:
                if wanted is None or x["attempt_id"] in wanted:
                    inspect_cli.print_log_line(
                        names, x["attempt_id"], x["at"], x["stream"], x["line"]
                    )
            if page:
                after = page[-1]["id"]
            if len(page) < LOG_PAGE:
                break
        if not args.follow or execution["state"] in ENDED:
            return EXIT_OK
        sys.stdout.flush()
        time.sleep(0.3)


def _attempt_names(
    execution: dict[str, Any], args: argparse.Namespace
) -> tuple[dict[int, tuple[str, int]], set[int] | None]:
    """Each attempt's task label and number by id; the ids ``--task``/``--attempt`` keep
    (None: all)."""
    runs = execution["task_runs"]
    names = {a["id"]: (r["task"], a["number"]) for r in runs for a in r["attempts"]}
    if args.task is None and args.attempt is None:
        return names, None
    tasks = {r["task"].split("[")[0] for r in runs}
    if args.task is not None and args.task not in tasks:
        raise NotFound(
            f"execution {args.id} has no task '{args.task}' (tasks: {', '.join(sorted(tasks))})"
        )
    wanted = {
        a["id"]
        for r in runs
        for a in r["attempts"]
        if (args.task is None or r["task"].split("[")[0] == args.task)
        and (args.attempt is None or a["number"] == args.attempt)
    }
    return names, wanted


HANDLERS = {
    "run": _run,
    "emit": _emit,
    "kill": _kill,
    "restart": _restart,
    "replay": _replay,
    "mark": _mark,
    "executions list": _list,
    "executions show": _show,
    "executions history": _history,
    "flows list": _flows,
    "flows add": _flows_add,
    "flows next": _flows_next,
    "flows history": _flows_history,
    "flows show": _flows_show,
    "flows diff": _flows_diff,
    "flows activate": _flows_flag,
    "flows deactivate": _flows_flag,
    "logs": _logs,
}
