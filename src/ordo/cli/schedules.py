"""``ordo schedules list|add|remove``: schedules kept in the store beside a flow's own
triggers (the same ones the UI's *Schedule…* helper and ``/api/schedules`` make)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

from ordo import services
from ordo.cli.common import fmt_time, open_db, parse_pairs, print_json, table
from ordo.errors import EXIT_OK, UsageError


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        now = time.time()
        if args.action == "add":
            namespace, _, flow_id = args.flow.rpartition("/")
            if (args.cron is None) == (args.every is None):
                raise UsageError("schedules add: give --cron EXPRESSION or --every MINUTES")
            expression = args.cron if args.cron is not None else services.every_to_cron(args.every)
            row = services.add_schedule(
                store,
                namespace or "default",
                flow_id,
                expression,
                args.timezone,
                parse_pairs(args.input, "-i"),
                not args.inactive,
                "cli",
                now,
            )
            times = services.next_schedule_times(row.cron, row.timezone, now, 3)
            print(
                f"schedule {row.id} added: {row.namespace}/{row.flow_id} at '{row.cron}' "
                f"({row.timezone}){'' if row.active else ', inactive'}"
            )
            print("next: " + ", ".join(fmt_time(t) for t in times))
        elif args.action == "remove":
            services.remove_schedule(store, args.id)
            print(f"schedule {args.id} removed")
        else:
            rows = store.list_schedules()
            if args.flow:
                namespace, _, flow_id = args.flow.rpartition("/")
                rows = [
                    r for r in rows if (r.namespace, r.flow_id) == (namespace or "default", flow_id)
                ]
            if args.json:
                print_json([r.to_dict() for r in rows])
                return EXIT_OK
            print(
                table(
                    ["ID", "FLOW", "CRON", "TIMEZONE", "ACTIVE", "INPUTS", "NEXT"],
                    [
                        [
                            str(r.id),
                            f"{r.namespace}/{r.flow_id}",
                            r.cron,
                            r.timezone,
                            "yes" if r.active else "no",
                            ", ".join(f"{k}={v}" for k, v in r.inputs.items()) or "-",
                            fmt_time(services.next_schedule_times(r.cron, r.timezone, now, 1)[0])
                            if r.active
                            else "-",
                        ]
                        for r in rows
                    ],
                )
            )
    finally:
        store.close()
    return EXIT_OK
