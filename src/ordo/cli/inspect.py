"""``ordo executions list|show``, ``ordo logs``, ``ordo flows list``: reading the store."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from ordo.cli.common import fmt_duration, fmt_time, open_db, print_json, short, table
from ordo.errors import EXIT_OK, NotFound
from ordo.model import State
from ordo.store import Store


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        if args.command == "logs":
            return _logs(store, args)
        if args.command == "flows":
            return _flows(store, args)
        if args.command == "db":
            version = store.upgrade()  # type: ignore[attr-defined]
            print(f"{store.backend} schema at version {version}")  # type: ignore[attr-defined]
            return EXIT_OK
        if args.action == "list":
            return _list(store, args)
        return _show(store, args)
    finally:
        store.close()


def _list(store: Store, args: argparse.Namespace) -> int:
    state = State(args.state) if args.state else None
    rows = store.list_executions(flow=args.flow, state=state, limit=args.limit)
    if args.json:
        print_json([_execution_dict(e) for e in rows])
        return EXIT_OK
    print(
        table(
            ["ID", "FLOW", "STATE", "STARTED", "DURATION", "REASON"],
            [
                [
                    str(e.id),
                    e.flow_key,
                    e.state.value,
                    fmt_time(e.started_at),
                    fmt_duration(e.started_at, e.ended_at),
                    short(e.reason or "", 50),
                ]
                for e in rows
            ],
        )
    )
    return EXIT_OK


def _execution_dict(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "namespace": e.namespace,
        "flow": e.flow_id,
        "revision_id": e.revision_id,
        "state": e.state.value,
        "inputs": e.inputs,
        "labels": e.labels,
        "reason": e.reason,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "ended_at": e.ended_at,
        "parent_id": e.parent_id,
    }


def execution_document(store: Store, execution_id: int) -> dict[str, Any]:
    """Everything about one execution as plain JSON types (``--json``)."""
    ex = store.get_execution(execution_id)
    attempts = store.attempts(execution_id)
    outputs = store.outputs(execution_id)
    metrics = store.metrics(execution_id)
    runs = []
    for r in store.task_runs(execution_id):
        runs.append(
            {
                "id": r.id,
                "task": r.task_id,
                "state": r.state.value,
                "reason": r.reason,
                "attempts": [
                    {
                        "number": a.number,
                        "state": a.state.value,
                        "started_at": a.started_at,
                        "ended_at": a.ended_at,
                        "exit_code": a.exit_code,
                        "reason": a.reason,
                        "error": a.error,
                        "worker": a.worker_id,
                        "cpu_seconds": a.cpu_seconds,
                        "peak_rss_kb": a.peak_rss_kb,
                    }
                    for a in attempts
                    if a.task_run_id == r.id
                ],
                "outputs": outputs.get(r.task_id, {}),
                "metrics": [
                    {"name": m.name, "kind": m.kind, "value": m.value, "tags": m.tags}
                    for m in metrics
                    if m.task_run_id == r.id
                ],
                "started_at": r.started_at,
                "ended_at": r.ended_at,
            }
        )
    return {**_execution_dict(ex), "task_runs": runs}


def _show(store: Store, args: argparse.Namespace) -> int:
    doc = execution_document(store, args.id)
    if args.json:
        print_json(doc)
        return EXIT_OK
    print(f"execution {doc['id']}  {doc['namespace']}/{doc['flow']}  {doc['state']}")
    print(
        f"  started {fmt_time(doc['started_at'])}  "
        f"duration {fmt_duration(doc['started_at'], doc['ended_at'])}"
    )
    if doc["reason"]:
        print(f"  reason: {doc['reason']}")
    if doc["inputs"]:
        print(f"  inputs: {short(doc['inputs'], 100)}")
    if doc["labels"]:
        print(f"  labels: {short(doc['labels'], 100)}")
    rows = []
    for run in doc["task_runs"]:
        for a in run["attempts"] or [None]:
            rows.append(_attempt_row(run, a))
    print()
    print(table(["TASK", "STATE", "#", "DURATION", "EXIT", "CPU", "PEAK MEM", "REASON"], rows))
    _print_details(doc)
    return EXIT_OK


def _attempt_row(run: dict[str, Any], a: dict[str, Any] | None) -> list[str]:
    if a is None:
        return [run["task"], run["state"], "-", "-", "-", "-", "-", short(run["reason"] or "", 60)]
    cpu = f"{a['cpu_seconds']:.2f}s" if a["cpu_seconds"] is not None else "-"
    mem = f"{a['peak_rss_kb'] // 1024}MB" if a["peak_rss_kb"] is not None else "-"
    return [
        run["task"],
        a["state"],
        str(a["number"]),
        fmt_duration(a["started_at"], a["ended_at"]),
        "-" if a["exit_code"] is None else str(a["exit_code"]),
        cpu,
        mem,
        short(a["error"] or a["reason"] or "", 60),
    ]


def _print_details(doc: dict[str, Any]) -> None:
    for run in doc["task_runs"]:
        if run["outputs"]:
            print(f"\noutputs of {run['task']}:")
            for key, value in run["outputs"].items():
                print(f"  {key} = {short(value, 100)}")
        if run["metrics"]:
            print(f"\nmetrics of {run['task']}:")
            for m in run["metrics"]:
                print(f"  {m['name']} ({m['kind']}) = {m['value']:g} {m['tags'] or ''}".rstrip())
        errors = [a for a in run["attempts"] if a["error"]]
        for a in errors:
            print(
                f"\nerror of {run['task']} attempt {a['number']}:\n  "
                + a["error"].replace("\n", "\n  ")
            )


def _logs(store: Store, args: argparse.Namespace) -> int:
    execution = store.get_execution(args.id)
    wanted = _attempt_filter(store, args)
    names = {
        a.id: (r.task_id, a.number)
        for r in store.task_runs(args.id)
        for a in store.attempts(args.id)
        if a.task_run_id == r.id
    }
    after = 0
    while True:
        lines = store.logs(args.id, attempt_ids=wanted, after_id=after)
        for ln in lines:
            task, number = names.get(ln.attempt_id, ("?", 0))
            stamp = time.strftime("%H:%M:%S", time.localtime(ln.at))
            sys.stdout.write(f"{stamp} {task}#{number} {ln.stream}: {ln.line}\n")
        if lines:
            after = lines[-1].id
            continue
        if not args.follow or execution.state.terminal:
            return EXIT_OK
        sys.stdout.flush()
        time.sleep(0.3)
        execution = store.get_execution(args.id)
        names.update(
            {
                a.id: (r.task_id, a.number)
                for r in store.task_runs(args.id)
                for a in store.attempts(args.id)
                if a.task_run_id == r.id
            }
        )
        wanted = _attempt_filter(store, args)


def _attempt_filter(store: Store, args: argparse.Namespace) -> list[int] | None:
    if args.task is None and args.attempt is None:
        return None
    runs = {r.id: r.task_id for r in store.task_runs(args.id)}
    if args.task is not None and args.task not in runs.values():
        raise NotFound(
            f"execution {args.id} has no task '{args.task}' "
            f"(tasks: {', '.join(sorted(set(runs.values())))})"
        )
    return [
        a.id
        for a in store.attempts(args.id)
        if (args.task is None or runs[a.task_run_id] == args.task)
        and (args.attempt is None or a.number == args.attempt)
    ]


def _flows(store: Store, args: argparse.Namespace) -> int:
    revisions = store.list_flows()
    if args.json:
        print_json(
            [
                {
                    "namespace": r.namespace,
                    "id": r.flow_id,
                    "revision": r.revision,
                    "path": r.path,
                    "tasks": len(r.flow.tasks),
                    "description": r.flow.description,
                }
                for r in revisions
            ]
        )
        return EXIT_OK
    print(
        table(
            ["FLOW", "REVISION", "TASKS", "PATH", "DESCRIPTION"],
            [
                [
                    f"{r.namespace}/{r.flow_id}",
                    str(r.revision),
                    str(len(r.flow.tasks)),
                    r.path or "-",
                    short(r.flow.description, 40),
                ]
                for r in revisions
            ],
        )
    )
    return EXIT_OK
