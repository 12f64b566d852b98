"""PostgreSQL W2 of two versions of ordo, interleaved run by run (issue #17).

``bench/pg.py`` measures one version beside the bare floor; on a machine whose speed
drifts within minutes, two of its runs one after the other compare badly. This runs
both versions at once instead: each side has its own scratch database and its own two
idle ``ordo worker --workers 2`` processes, and W2 (500 no-op python tasks + a join) is
submitted to one side, then the other, alternating which goes first, so that the drift
hits both alike. It prints each side's median rate (first attempt's start to last
attempt's end, as ``bench/pg.py``), its quartiles, and the ratio of the medians.

Run: ``.venv/bin/python bench/pg_ab.py [--runs 20] --base /path/to/other/src``: side A
runs the ordo whose ``src`` folder ``--base`` names (a ``git worktree`` of another
commit), side B this one. ``--base`` left out: both sides run this one (what noise
alone reads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from pg import DEFAULT_URL, _wait_registered, drop_database, scratch_database, w2_once
from run import compile_ordo, write_flows


def _side(ordo: str, admin_url: str, src: str | None) -> dict[str, Any]:
    """A scratch database, W2's flow, and two idle workers of the ordo in ``src``."""
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-ab-"))
    name, url = scratch_database(admin_url)
    env = {**os.environ, "ORDO_DB": url, "ORDO_HOME": str(work / "home")}
    if src is not None:
        env["PYTHONPATH"] = src
    side: dict[str, Any] = {"work": work, "name": name, "env": env, "procs": [], "rates": []}
    side["flow"] = write_flows(work)["W2"]
    subprocess.run([ordo, "db", "upgrade"], env=env, check=True, capture_output=True)
    side["procs"] = [
        subprocess.Popen(
            [ordo, "worker", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    side["conn"] = conn = psycopg.connect(url, autocommit=True)
    conn.execute("VACUUM ANALYZE")
    _wait_registered(conn, 2)
    return side


def _w2(ordo: str, side: dict[str, Any]) -> float:
    """One W2 on ``side``: task runs per second, first start to last end."""
    return w2_once(ordo, side["env"], side["flow"], side["conn"], idle=0.3)[1]


def _close(admin_url: str, side: dict[str, Any]) -> None:
    for proc in side["procs"]:
        proc.send_signal(signal.SIGTERM)
    for proc in side["procs"]:
        proc.wait()
    if "conn" in side:
        side["conn"].close()
    drop_database(admin_url, side["name"])
    shutil.rmtree(side["work"], ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--runs", type=int, default=20, help="W2 runs per side")
    parser.add_argument("--base", help="side A: the src folder of another ordo")
    args = parser.parse_args()
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    compile_ordo()
    if args.base:
        subprocess.run([sys.executable, "-m", "compileall", "-q", args.base], check=True)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    sides: list[dict[str, Any]] = []
    try:
        for src in (args.base, None):
            sides.append(_side(ordo, args.url, src))
        for side in sides:  # (warm: hosts, connections, prepared statements)
            _w2(ordo, side)
            _w2(ordo, side)
        for i in range(args.runs):
            for side in sides if i % 2 == 0 else sides[::-1]:
                side["rates"].append(_w2(ordo, side))
    finally:
        for side in sides:
            _close(args.url, side)
    print(f"W2 on PostgreSQL (501 task runs), 2 workers of 2 slots a side, {args.runs} runs")
    base = statistics.median(sides[0]["rates"])
    for label, side in zip(("A " + (args.base or "this ordo"), "B this ordo"), sides, strict=True):
        rates = side["rates"]
        q1, _, q3 = statistics.quantiles(rates, n=4)
        median = statistics.median(rates)
        print(f"{label}: median {median:.0f} runs/s (quartiles {q1:.0f}-{q3:.0f})")
    print(f"B / A: {statistics.median(sides[1]['rates']) / base:.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
