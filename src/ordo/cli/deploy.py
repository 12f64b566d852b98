"""``ordo deploy DIR|git+URL@REF`` and ``ordo flows history|show|diff``.

``ordo deploy`` exits 0 when every definition was valid, 1 when some were not (the
valid ones are deployed all the same, the invalid ones keep their previous revision),
2 on a usage error (no such folder, git cannot fetch the ref).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from ordo import deploy, views
from ordo.cli.common import fmt_time, load_settings, open_db, print_json, table
from ordo.cli.serving import flow_key
from ordo.errors import EXIT_FAILED, EXIT_OK


def checkouts_folder(environ: Mapping[str, str]) -> str:
    home = environ.get("ORDO_HOME") or os.path.join(os.path.expanduser("~"), ".ordo")
    return os.path.join(home, "checkouts")


def deploy_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    limits = deploy.file_limits(load_settings(environ))
    store = open_db(args.db, environ)
    try:
        now = time.time()
        if args.target.startswith("git+"):
            checkouts = checkouts_folder(environ)
            report = deploy.deploy_git(
                store, args.target, now, checkouts=checkouts, dry_run=args.dry_run, limits=limits
            )
        else:
            report = deploy.deploy_folder(
                store, args.target, now, dry_run=args.dry_run, limits=limits
            )
    finally:
        store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print_report(report)
    return EXIT_FAILED if report.invalid else EXIT_OK


def print_report(report: deploy.Report) -> None:
    rows = [
        [c.kind, c.flow or "-", "-" if c.revision is None else str(c.revision), c.path or "-"]
        for c in report.changes
    ]
    if rows:
        print(table(["CHANGE", "FLOW", "REVISION", "FILE"], rows))
    for change in report.invalid:
        for error in change.errors:
            print(f"error: {error}", file=sys.stderr)
    counts = ", ".join(f"{n} {k}" for k, n in deploy.summary(report.changes).items() if n)
    what = "would deploy" if report.dry_run else "deployed"
    print(f"{what} {report.origin}: {counts or 'nothing found'}")
    if report.dry_run:
        print("dry run: nothing stored")


def flows_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    namespace, flow_id = flow_key(args.id)
    store = open_db(args.db, environ)
    try:
        if args.action == "history":
            rows = views.revision_history(store, namespace, flow_id)
            print_history(rows, args.json)
        elif args.action == "show":
            doc = views.revision_document(store, namespace, flow_id, args.revision)
            print_revision(doc, args.json)
        else:
            sys.stdout.write(views.revision_diff(store, namespace, flow_id, args.old, args.new))
    finally:
        store.close()
    return EXIT_OK


def print_history(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    print(
        table(
            ["REVISION", "CREATED", "HASH", "EXECUTIONS", "PATH", "ORIGIN"],
            [
                [
                    str(r["revision"]),
                    fmt_time(r["created_at"]),
                    str(r["content_hash"])[:12],
                    str(r["executions"]),
                    r["path"] or "-",
                    r["origin"] or "-",
                ]
                for r in rows
            ],
        )
    )


def print_revision(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(doc)
        return
    print(f"# {doc['namespace']}/{doc['id']} revision {doc['revision']}", file=sys.stderr)
    sys.stdout.write(doc["source"] if doc["source"].endswith("\n") else doc["source"] + "\n")
    for name, text in doc["scripts"].items():
        print(f"\n# --- {name}")
        if text is None:
            print("# (missing, not text, or too large to keep)")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
