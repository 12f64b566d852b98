"""``ordo executions list|show``, ``ordo logs``, ``ordo flows list``: reading the store."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from ordo import services, views
from ordo.cli.common import (
    fmt_duration,
    fmt_time,
    open_db,
    parse_pairs,
    print_json,
    short,
    table,
)
from ordo.errors import EXIT_OK, NotFound, did_you_mean
from ordo.model import State
from ordo.store import Store


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        if args.command == "logs":
            return _logs(store, args)
        if args.command == "flows" and args.action == "add":
            return _add_flows(store, args)
        if args.command == "flows":
            return _flows(store, args)
        if args.command == "db":
            version = store.upgrade()
            print(f"{store.backend} schema at version {version}")
            return EXIT_OK
        if args.action == "list":
            return _list(store, args)
        if args.action == "history":
            return _history(store, args)
        return _show(store, args)
    finally:
        store.close()


def _list(store: Store, args: argparse.Namespace) -> int:
    state = State(args.state) if args.state else None
    rows = store.list_executions(
        flow=args.flow,
        state=state,
        kind=getattr(args, "kind", None),
        saved=args.saved,
        dev=args.dev,
        limit=args.limit,
        labels=parse_pairs(args.label, "--label"),
    )
    docs = [views.execution_dict(e) for e in rows]
    if args.json:
        print_json(views.with_iso(docs))
        return EXIT_OK
    print_executions(docs)
    return EXIT_OK


def print_executions(docs: list[dict[str, Any]]) -> None:
    """The table of ``executions list`` from execution documents (local or remote)."""
    print(
        table(
            ["ID", "FLOW", "STATE", "MARKS", "STARTED", "DURATION", "REASON"],
            [
                [
                    str(e["id"]),
                    f"{e['namespace']}/{e['flow']}",
                    e["state"],
                    marks(e),
                    fmt_time(e["started_at"]),
                    fmt_duration(e["started_at"], e["ended_at"]),
                    short(e["reason"] or "", 50),
                ]
                for e in docs
            ],
        )
    )


def _history(store: Store, args: argparse.Namespace) -> int:
    rows = views.state_history(store, args.id)
    if args.json:
        print_json(rows)
        return EXIT_OK
    print_history(rows)
    return EXIT_OK


def print_history(rows: list[dict[str, Any]]) -> None:
    """The transitions as a table: local time with milliseconds, what moved (the
    execution or a task run), FROM -> TO, reason."""
    print(
        table(
            ["TIME", "WHAT", "FROM", "TO", "REASON"],
            [
                [
                    fmt_time(h["at"]) + f".{int(h['at'] * 1000) % 1000:03d}",
                    h["task"] or "execution",
                    h["from"] or "-",
                    h["to"],
                    short(h["reason"] or "", 70),
                ]
                for h in rows
            ],
        )
    )


def marks(e: Mapping[str, Any]) -> str:
    """``dev``, ``saved:NAME`` and a kind other than FLOW of an execution document, as
    the MARKS column shows them."""
    found = [str(e["kind"]).lower()] if e.get("kind", "FLOW") != "FLOW" else []
    found += ["dev"] if e["dev"] else []
    if e["saved"] is not None:
        found.append(f"saved:{e['saved']['name']}")
    return " ".join(found)


def _show(store: Store, args: argparse.Namespace) -> int:
    doc = views.execution_document(store, args.id)
    if args.json:
        print_json(views.with_iso(doc))
        return EXIT_OK
    dev = "  dev" if doc["dev"] else ""
    print(f"execution {doc['id']}  {doc['namespace']}/{doc['flow']}  {doc['state']}{dev}")
    print(
        f"  started {fmt_time(doc['started_at'])}  "
        f"duration {fmt_duration(doc['started_at'], doc['ended_at'])}"
    )
    if doc["reason"]:
        print(f"  reason: {doc['reason']}")
    if doc["saved"]:
        saved = doc["saved"]
        about = f": {short(saved['description'], 80)}" if saved["description"] else ""
        print(f"  saved as {saved['name']!r} at {fmt_time(saved['saved_at'])}{about}")
    if doc["parent_id"]:
        print(f"  parent: execution {doc['parent_id']}")
    if doc["original_id"]:
        print(f"  replay of execution {doc['original_id']}")
    if doc["inputs"]:
        print(f"  inputs: {short(doc['inputs'], 100)}")
    if doc["labels"]:
        print(f"  labels: {short(doc['labels'], 100)}")
    if doc.get("options"):
        print(f"  run options: {short(doc['options'], 100)}")
    if doc.get("scope") is not None:
        print(f"  scope: namespaces {', '.join(doc['scope']) or 'none'}")
    rows = []
    for run in doc["task_runs"]:
        for a in run["attempts"] or [None]:
            rows.append(_attempt_row(run, a))
    print()
    print(table(["TASK", "STATE", "#", "DURATION", "EXIT", "CPU", "PEAK MEM", "REASON"], rows))
    if doc["children"]:
        print("\nchild executions:")
        for child in doc["children"]:
            why = f"  {short(child['reason'], 70)}" if child["reason"] else ""
            print(f"  {child['id']}  {child['flow']}  {child['state']}{why}")
    if doc.get("calls"):
        print("\nconnection calls (executions of kind CONNECTION):")
        for call in doc["calls"]:
            why = f"  {short(call['reason'], 70)}" if call["reason"] else ""
            print(f"  {call['id']}  {call['flow']}  {call['state']}{why}")
    _print_details(doc)
    if doc["outputs"]:
        print("\noutputs of the execution:")
        for key, value in doc["outputs"].items():
            print(f"  {key} = {short(value, 100)}")
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
        for a in run["attempts"]:
            _print_checks(run["task"], a)
            if not a["error"] or a["reason"] == "replayed":  # replayed: shown in the table
                continue
            what = "error of" if a["state"] in ("FAILED", "KILLED") else "note on"
            print(
                f"\n{what} {run['task']} attempt {a['number']}:\n  "
                + a["error"].replace("\n", "\n  ")
            )


def _print_checks(task: str, attempt: dict[str, Any]) -> None:
    """One line per check of the attempt; a failed command check's last output lines."""
    if not attempt["checks"]:
        return
    print(f"\nchecks of {task} attempt {attempt['number']}:")
    width = max(len(c["kind"]) for c in attempt["checks"])
    for c in attempt["checks"]:
        verdict = "passed" if c["ok"] else "FAILED"
        where = f"{c['phase']:<4} {c['position']}"
        print(f"  {where} {c['kind']:<{width}}  {verdict}  {short(c['message'], 100)}")
        if c["output"] and not c["ok"]:
            for line in c["output"].splitlines()[-_CHECK_OUTPUT_LINES:]:
                print(f"      | {line}")


_CHECK_OUTPUT_LINES = 10


def _logs(store: Store, args: argparse.Namespace) -> int:
    execution = store.get_execution(args.id)
    wanted = _attempt_filter(store, args)
    names = _attempt_names(store, args.id)
    after = 0
    while True:
        lines = store.logs(args.id, attempt_ids=wanted, after_id=after)
        for ln in lines:
            print_log_line(names, ln.attempt_id, ln.at, ln.stream, ln.line)
        if lines:
            after = lines[-1].id
            continue
        if not args.follow or execution.state.terminal:
            return EXIT_OK
        sys.stdout.flush()
        time.sleep(0.3)
        execution = store.get_execution(args.id)
        names = _attempt_names(store, args.id)
        wanted = _attempt_filter(store, args)


def print_log_line(
    names: Mapping[int, tuple[str, int]], attempt_id: int, at: float, stream: str, line: str
) -> None:
    """``HH:MM:SS task#attempt stream: line``, as ``ordo logs`` prints every line."""
    task, number = names.get(attempt_id, ("?", 0))
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    sys.stdout.write(f"{stamp} {task}#{number} {stream}: {line}\n")


def _attempt_names(store: Store, execution_id: int) -> dict[int, tuple[str, int]]:
    """Each attempt's task run label and number, by attempt id."""
    labels = {r.id: r.label for r in store.task_runs(execution_id)}
    return {a.id: (labels.get(a.task_run_id, "?"), a.number) for a in store.attempts(execution_id)}


def _attempt_filter(store: Store, args: argparse.Namespace) -> list[int] | None:
    if args.task is None and args.attempt is None:
        return None
    runs = {r.id: r.task_id for r in store.task_runs(args.id)}
    if args.task is not None and args.task not in runs.values():
        tip = did_you_mean(args.task, set(runs.values()))
        raise NotFound(
            f"execution {args.id} has no task '{args.task}'{tip} "
            f"(tasks: {', '.join(sorted(set(runs.values())))})"
        )
    return [
        a.id
        for a in store.attempts(args.id)
        if (args.task is None or runs[a.task_run_id] == args.task)
        and (args.attempt is None or a.number == args.attempt)
    ]


def _add_flows(store: Store, args: argparse.Namespace) -> int:
    """Register each file (or package folder): a new revision when it changed."""
    for path in args.files:
        known = {(r.namespace, r.flow_id): r.revision for r in store.list_flows()}
        revision = services.register_file(store, path, time.time())
        before = known.get((revision.namespace, revision.flow_id))
        what = "unchanged" if before == revision.revision else "added"
        print(f"{revision.namespace}/{revision.flow_id} revision {revision.revision} {what}")
    return EXIT_OK


def _flows(store: Store, args: argparse.Namespace) -> int:
    wanted = parse_pairs(args.label, "--label")
    revisions = [
        r
        for r in store.list_flows()
        if (args.namespace is None or r.namespace == args.namespace)
        and all(r.flow.labels.get(k) == v for k, v in wanted.items())
    ]
    flags = store.flow_flags()
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
                    "labels": dict(r.flow.labels),
                    "active": flags.get((r.namespace, r.flow_id), r.flow.active),
                }
                for r in revisions
            ]
        )
        return EXIT_OK
    print(
        table(
            ["FLOW", "REVISION", "ACTIVE", "TASKS", "LABELS", "PATH", "DESCRIPTION"],
            [
                [
                    f"{r.namespace}/{r.flow_id}",
                    str(r.revision),
                    str(flags.get((r.namespace, r.flow_id), r.flow.active)).lower(),
                    str(len(r.flow.tasks)),
                    ",".join(f"{k}={v}" for k, v in sorted(r.flow.labels.items())) or "-",
                    r.path or "-",
                    short(r.flow.description, 40),
                ]
                for r in revisions
            ],
        )
    )
    return EXIT_OK
