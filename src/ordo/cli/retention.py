"""``ordo executions save|unsave``, ``ordo gc``, and how ``ordo run`` and ``ordo submit``
record a new execution (the ``--from-saved`` preset among the rest)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from ordo import definitions, engine, services
from ordo.cli.common import (
    fmt_time,
    load_settings,
    open_db,
    parse_pairs,
    plural,
    print_json,
    skipped_tasks,
)
from ordo.errors import EXIT_OK, UsageError
from ordo.model import Flow
from ordo.settings import Settings
from ordo.store import Store
from ordo.store.records import Revision, Swept

DAY = 86_400.0


def save_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    store = open_db(args.db, environ)
    try:
        if args.action == "unsave":
            name = services.unsave(store, args.id)
            print(f"execution {args.id} is no longer saved (it was saved as {name!r})")
            return EXIT_OK
        services.save(store, args.id, args.name, args.description, time.time())
        print(f"execution {args.id} saved as {args.name!r}")
    finally:
        store.close()
    return EXIT_OK


def preset_inputs(
    store: Store, flow: Flow, from_saved: str | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The inputs of a new execution: the saved execution's (``--from-saved``) with the
    ``-i`` values over them. Saved inputs the flow no longer declares are left out, with
    a note on stderr."""
    if not from_saved:
        return dict(given)
    saved, dropped = engine.saved_inputs(store, flow, from_saved)
    for name in dropped:
        print(
            f"note: input {name!r} of saved execution {from_saved!r} is no longer an input "
            f"of {flow.key}; left out",
            file=sys.stderr,
        )
    return {**saved, **given}


def start_from_args(
    store: Store, revision: Revision, args: argparse.Namespace, labels: Mapping[str, str]
) -> int:
    """Record a new execution as ``ordo run`` and ``ordo submit`` ask for it (the
    ``--from-saved`` preset and ``-i`` inputs, ``--skip``, ``--continue-on-error``,
    ``--dev``); its id."""
    given = parse_pairs(args.input, "-i")
    options = definitions.read_run_options(**run_option_fields(args))
    inputs = preset_inputs(store, revision.flow, args.from_saved, given)
    return services.start(
        store,
        revision,
        inputs,
        time.time(),
        labels=labels,
        skip_tasks=skipped_tasks(args.skip),
        continue_on_error=args.continue_on_error,
        dev=args.dev,
        options=options,
    )


def run_option_fields(args: argparse.Namespace) -> dict[str, Any]:
    """``--retry``, ``--retry-delay``, ``--retry-backoff``, ``--timeout`` and
    ``--notify`` as the fields of :func:`ordo.definitions.read_run_options` (and of the
    API's start body): only those given."""
    retry = {
        key: value
        for key, value in (
            ("attempts", args.retry),
            ("delay", args.retry_delay),
            ("backoff", args.retry_backoff),
        )
        if value is not None
    }
    fields: dict[str, Any] = {}
    if retry:
        fields["retry"] = retry
    if args.timeout is not None:
        fields["timeout"] = args.timeout
    if args.notify:
        fields["notify"] = [definitions.notify_rule(text) for text in args.notify]
    return fields


def gc_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Delete ended, unsaved execution trees older than the retention; reclaim space."""
    if args.batch < 1:
        raise UsageError(f"--batch must be at least 1, found {args.batch}")
    config = load_settings(environ)
    store = open_db(args.db, environ)
    try:
        started = time.monotonic()
        now = time.time()
        totals = _Totals()
        for swept in store.collect_garbage(
            now - config.retention_days * DAY,
            now - config.retention_dev_days * DAY,
            batch=args.batch,
            dry_run=args.dry_run,
        ):
            totals.add(swept)
        events = store.collect_events(
            now - config.retention_days * DAY, batch=args.batch, dry_run=args.dry_run
        )
        reclaimed = None
        if not args.dry_run and (totals.executions or events):
            reclaimed = store.reclaim_space()
        seconds = time.monotonic() - started
    finally:
        store.close()
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "retention": {
                    "days": config.retention_days,
                    "dev_days": config.retention_dev_days,
                    "from": dict(config.origins),
                },
                "executions": totals.executions,
                "dev_executions": totals.dev,
                "rows": totals.rows,
                "oldest_ended_at": totals.oldest,
                "newest_ended_at": totals.newest,
                "batches": totals.batches,
                "events": events,
                "seconds": round(seconds, 3),
                "reclaimed_bytes": reclaimed.bytes if reclaimed else None,
            }
        )
        return EXIT_OK
    print(_retention_line(config))
    verb = "would delete" if args.dry_run else "deleted"
    if events:
        print(f"{verb} {plural(events, 'event')} received before the retention")
    if not totals.executions:
        print("nothing to delete: no ended, unsaved execution is older than its retention")
        return EXIT_OK
    dev = f" ({totals.dev:,} dev)" if totals.dev else ""
    batches = f"{totals.batches} batch" + ("es" if totals.batches != 1 else "")
    print(
        f"{verb} {plural(totals.executions, 'execution')}{dev} and "
        f"{'its' if totals.executions == 1 else 'their'} "
        f"{plural(sum(totals.rows.values()), 'row')} in {seconds:.2f}s ({batches})"
    )
    print(f"  ended from {fmt_time(totals.oldest)} to {fmt_time(totals.newest)}")
    print("  rows: " + ", ".join(f"{table} {n:,}" for table, n in totals.rows.items()))
    if args.dry_run:
        print("nothing deleted (--dry-run)")
    elif reclaimed is not None:
        if reclaimed.bytes is None:
            print(f"space: {reclaimed.how}")
        else:
            print(f"space: {_size(reclaimed.bytes)} given back ({reclaimed.how})")
    return EXIT_OK


class _Totals:
    def __init__(self) -> None:
        self.executions = 0
        self.dev = 0
        self.batches = 0
        self.rows: dict[str, int] = {}
        self.oldest: float | None = None
        self.newest: float | None = None

    def add(self, swept: Swept) -> None:
        self.executions += swept.executions
        if swept.dev:
            self.dev += swept.executions
        self.batches += 1
        for table, n in swept.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n
        if swept.oldest is not None:
            self.oldest = swept.oldest if self.oldest is None else min(self.oldest, swept.oldest)
        if swept.newest is not None:
            self.newest = swept.newest if self.newest is None else max(self.newest, swept.newest)


def _retention_line(config: Settings) -> str:
    def one(key: str, days: float) -> str:
        return f"{days:g} days ({config.origins.get(key, 'default')})"

    return (
        f"retention: {one('retention.days', config.retention_days)}; dev executions: "
        f"{one('retention.dev_days', config.retention_dev_days)}"
    )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"
