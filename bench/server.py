"""``ordo server`` under load, through real HTTP against a real server process:

- S1: 1,000 events posted by a bounded client loop (8 threads) -> exactly 1,000
  executions recorded, none lost; events/s accepted.
- S2: event POST -> its first task RUNNING (the task run's started_at), 200 events one
  after another with embedded workers idle: p50 (target <= 50 ms) and p99 (<= 250 ms)
  on SQLite, and the same on PostgreSQL.
- S3: a ``* * * * *`` schedule: how late the tick's execution is created (<= 1 s).
- Baseline in the same run: the round trip of ``GET /health`` (HTTP and the store only).

    .venv/bin/python bench/server.py [--pg URL] [--no-schedule]
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

FLOW = """
id: bench
namespace: bench
triggers:
  - {type: event, event: ping}
  - {type: schedule, cron: "* * * * *"}
tasks:
  - {id: a, type: shell, command: "true"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db: str, folder: Path) -> None:
        self.env = {**os.environ, "ORDO_HOME": str(folder / "home")}
        self.env.pop("ORDO_DB", None)
        cli = [sys.executable, "-m", "ordo.cli.main", "--db", db]
        made = subprocess.run(
            [*cli, "tokens", "create", "--name", f"bench-{time.time_ns()}"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [*cli, "server", "--port", str(self.port), "--workers", "2"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        response = self.http.post(
            "/api/flows", content=FLOW, headers={"Content-Type": "application/x-yaml"}
        )
        response.raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def count(self) -> int:
        total, cursor = 0, None
        while True:
            params: dict[str, object] = {"flow": "bench/bench", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get("/api/executions", params=params).json()
            total += sum(1 for e in page["items"] if e["started_by"] == "event:event1")
            cursor = page["next_cursor"]
            if cursor is None:
                return total

    def wait_idle(self) -> None:
        while True:
            page = self.http.get("/api/executions", params={"state": "RUNNING", "limit": 1})
            if not page.json()["items"]:
                return
            time.sleep(0.2)


def baseline(server: Server, n: int = 200) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        server.http.get("/health")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def burst(server: Server, total: int = 1000, threads: int = 8) -> tuple[float, int]:
    """S1: events/s accepted and executions recorded."""
    before = server.count()
    left = iter(range(total))
    lock = threading.Lock()

    def post() -> None:
        with httpx.Client(base_url=server.url, headers=server.http.headers, timeout=60) as c:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                c.post("/api/events/ping", json={"n": 1}).raise_for_status()

    workers = [threading.Thread(target=post) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return total / elapsed, server.count() - before


def latency(server: Server, n: int = 200) -> list[float]:
    """S2: seconds from just before each POST to its task run's started_at."""
    server.wait_idle()
    found = []
    for _ in range(n):
        sent = time.time()
        execution_id = server.http.post("/api/events/ping", json={}).json()["executions"][0]
        while True:
            runs = server.http.get(f"/api/executions/{execution_id}/task-runs").json()
            if runs and runs[0]["started_at"] is not None:
                found.append(runs[0]["started_at"] - sent)
                break
            time.sleep(0.002)
        time.sleep(0.02)
    return found


def schedule_lateness(server: Server) -> float:
    """S3: created_at of the next tick's execution minus the tick's time."""
    now = datetime.datetime.now(datetime.UTC)
    tick = (now + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
    while True:
        page = server.http.get("/api/executions", params={"flow": "bench/bench", "limit": 20})
        for e in page.json()["items"]:
            if e["started_by"] == "schedule:schedule2" and e["created_at"] >= tick.timestamp():
                return float(e["created_at"]) - tick.timestamp()
        if time.time() > tick.timestamp() + 30:
            raise SystemExit("no tick within 30 s of its time")
        time.sleep(0.2)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(label: str, db: str, folder: Path, schedule: bool) -> None:
    server = Server(db, folder)
    try:
        base = baseline(server)
        rate, recorded = burst(server)
        lat = latency(server)
        p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        print(f"[{label}] baseline GET /health: {base * 1000:.2f} ms")
        print(
            f"[{label}] S1 1,000 events: {rate:.0f} events/s accepted, {recorded} executions "
            f"recorded ({'none lost' if recorded == 1000 else 'LOST SOME'})"
        )
        print(
            f"[{label}] S2 event -> first task RUNNING: p50 {p50:.1f} ms (target 50), "
            f"p99 {p99:.1f} ms (target 250); p50 = {p50 / (base * 1000):.1f} x baseline"
        )
        if schedule:
            late = schedule_lateness(server)
            print(f"[{label}] S3 schedule tick -> execution created: {late:.3f} s late (target 1)")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", help="also on this PostgreSQL database (emptied first: no)")
    parser.add_argument("--no-schedule", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ordo-bench-server-"))
    run("sqlite", str(folder / "ordo.db"), folder, not args.no_schedule)
    if args.pg:
        run("postgresql", args.pg, folder, False)


if __name__ == "__main__":
    main()
