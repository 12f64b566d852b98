"""Outcomes that do not end well, and for_each items, recorded in batches (issue #17).

Two shapes, each an ``ordo run --workers 2`` in a fresh process:

- **F**: 500 python tasks that raise, each with a dependent (skipped naming it), with
  ``continue_on_error`` (1,000 task runs: 500 failures that end their task runs, 500
  skips);
- **E**: one for_each task of 2,000 no-op python items, 100 at a time.

Each runs ``--runs`` times on one database per backend and side (SQLite; PostgreSQL
too when ``--url`` can be reached), kept across the runs as a store is: what a query
costs as the tables grow shows. With ``--base SRC`` (the ``src`` folder of another
ordo, a ``git worktree`` of another commit) that ordo runs the same shapes on its own
databases, the two sides taking turns run by run, and the ratio of the medians is
printed (below 1: this ordo is faster).

Run: ``.venv/bin/python bench/batches.py [--runs 5] [--base /path/to/src] [--url
postgresql://...] [--sqlite-only]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from pg import DEFAULT_URL, drop_database, scratch_database
from run import compile_ordo

TASKS = 500
ITEMS = 2000


def write_shapes(folder: Path) -> dict[str, Path]:
    """The flows of F and E, and the module their tasks call."""
    (folder / "steps.py").write_text(
        "def noop():\n    return None\n\n\ndef boom():\n    raise RuntimeError('boom')\n"
    )
    lines = ["id: fails", "continue_on_error: true", "tasks:"]
    for i in range(TASKS):
        lines.append(f"  - {{id: t{i}, type: python, function: 'steps:boom'}}")
        lines.append(f"  - {{id: d{i}, type: python, function: 'steps:noop', depends_on: [t{i}]}}")
    (folder / "fails.yaml").write_text("\n".join(lines) + "\n")
    items = ", ".join(str(i) for i in range(ITEMS))
    (folder / "each.yaml").write_text(
        "id: each\ntasks:\n  - id: each\n    type: python\n    function: 'steps:noop'\n"
        f"    concurrency: 100\n    for_each: [{items}]\n"
    )
    return {"F": folder / "fails.yaml", "E": folder / "each.yaml"}


def once(src: str | None, db: str, flow: Path) -> float:
    """Seconds of one ``ordo run`` of ``flow`` on ``db`` by the ordo in ``src``."""
    env = {**os.environ, "ORDO_HOME": str(flow.parent / "home")}
    if src is not None:
        env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "ordo.cli.main", "run", "--db", db, "--workers", "2"]
    started = time.perf_counter()
    subprocess.run([*command, str(flow)], env=env, cwd=flow.parent, capture_output=True)
    return time.perf_counter() - started


def reachable(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each shape per side")
    parser.add_argument("--base", help="the src folder of another ordo, run beside this one")
    parser.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL server's URL")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    compile_ordo()
    if args.base:
        subprocess.run([sys.executable, "-m", "compileall", "-q", args.base], check=True)
    sides: list[str | None] = [None] if args.base is None else [None, args.base]
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-batches-"))
    scratch: list[str] = []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        flows = write_shapes(work)
        backends: dict[str, list[str]] = {
            "sqlite": [str(work / f"side{n}.db") for n in range(len(sides))]
        }
        if not args.sqlite_only and reachable(args.url):
            urls = []
            for _ in sides:
                name, url = scratch_database(args.url)
                scratch.append(name)
                urls.append(url)
            backends["postgresql"] = urls
        print(f"{'backend':<11}{'shape':<7}{'this ordo s':>12}", end="")
        print(f"{'base s':>10}{'this/base':>11}" if args.base else "")
        for backend, dbs in backends.items():
            for shape, flow in flows.items():
                times: list[list[float]] = [[] for _ in sides]
                for i in range(args.runs):  # taking turns, the first alternating
                    order = list(range(len(sides)))
                    for n in order if i % 2 == 0 else order[::-1]:
                        times[n].append(once(sides[n], dbs[n], flow))
                medians = [statistics.median(t) for t in times]
                line = f"{backend:<11}{shape:<7}{medians[0]:>12.3f}"
                if args.base:
                    line += f"{medians[1]:>10.3f}{medians[0] / medians[1]:>11.2f}"
                print(line)
    finally:
        for name in scratch:
            drop_database(args.url, name)
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
