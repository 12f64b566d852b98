"""PostgreSQL benchmarks (issue #3): W2 with 1, 2 and 4 ``ordo worker`` processes, the W1
chain step, and the cost of an idle worker.

Run: ``.venv/bin/python bench/pg.py [--url postgresql://postgres@127.0.0.1:5432/postgres]``.
It creates (and drops) a scratch database on that server. Commits are durable (the
server's defaults: ``synchronous_commit=on``).
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
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from run import compile_ordo, timed, write_flows


def scratch_database(admin_url: str) -> tuple[str, str]:
    name = f"ordo_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def state_of(conn: psycopg.Connection, execution_id: int) -> str:
    row = conn.execute("SELECT state FROM executions WHERE id = %s", (execution_id,)).fetchone()
    return str(row[0]) if row else "?"


def w2_with_workers(
    ordo: str, env: dict[str, str], flow: Path, url: str, n: int, repeat: int
) -> list[float]:
    """Seconds from ``ordo submit`` to SUCCESS of W2, ``repeat`` times, with ``n`` idle
    worker processes waiting (started once; one run first warms them up: their python
    hosts, connections and prepared statements)."""
    procs = [
        subprocess.Popen(
            [ordo, "worker", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # so that autovacuum does not start mid-run
            _wait_registered(conn, n)
            return [_w2_once(ordo, env, flow, conn) for _ in range(repeat + 1)][1:]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()


def _w2_once(ordo: str, env: dict[str, str], flow: Path, conn: psycopg.Connection) -> float:
    time.sleep(0.5)  # idle again
    start = time.perf_counter()
    out = subprocess.run(
        [ordo, "submit", str(flow)], env=env, capture_output=True, text=True, check=True
    )
    execution_id = int(out.stdout)
    while state_of(conn, execution_id) not in ("SUCCESS", "FAILED"):
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    assert state_of(conn, execution_id) == "SUCCESS"
    return elapsed


def _wait_registered(conn: psycopg.Connection, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM workers WHERE stopped_at IS NULL").fetchone()
        if row and row[0] >= n:
            time.sleep(0.3)
            return
        time.sleep(0.05)
    raise SystemExit("workers did not register")


def idle_cost(
    ordo: str, env: dict[str, str], url: str, name: str, seconds: float
) -> tuple[float, float]:
    """Transactions per second and CPU share of one idle worker."""
    proc = subprocess.Popen(
        [ordo, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(2)
        with psycopg.connect(url, autocommit=True) as conn:
            before = _xacts(conn, name)
            cpu_before = _cpu(proc.pid)
            time.sleep(seconds)
            after = _xacts(conn, name)
            cpu_after = _cpu(proc.pid)
        # our own two statistics reads are transactions too
        return (after - before - 2) / seconds, (cpu_after - cpu_before) / seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


def _xacts(conn: psycopg.Connection, name: str) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
    ).fetchone()
    return int(row[0]) if row else 0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "ORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measurement")
    args = parser.parse_args()
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    compile_ordo()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-pg-"))
    name, url = scratch_database(args.url)
    env = {**os.environ, "ORDO_DB": url, "ORDO_HOME": str(work / "home")}
    try:
        flows = write_flows(work)
        subprocess.run([ordo, "db", "upgrade"], env=env, check=True, capture_output=True)
        w2 = {}
        for n in (1, 2, 4):
            w2[n] = statistics.median(w2_with_workers(ordo, env, flows["W2"], url, n, args.repeat))
        chain = {}
        for key in ("W0", "W1"):
            cmd = [ordo, "run", str(flows[key]), "--quiet"]
            timed(cmd, env)
            chain[key] = statistics.median(timed(cmd, env)[0] for _ in range(args.repeat))
        qps, cpu = idle_cost(ordo, env, url, name, args.idle)
    finally:
        drop_database(args.url, name)
        shutil.rmtree(work, ignore_errors=True)
    print("W2 on PostgreSQL (501 task runs), worker processes with 2 slots each:")
    print(f"{'workers':<10}{'seconds':>10}{'task runs/s':>14}")
    for n, seconds in w2.items():
        print(f"{n:<10}{seconds:>10.3f}{501 / seconds:>14.0f}")
    step = (chain["W1"] - chain["W0"]) / 99
    print(f"W1 chain step on PostgreSQL (ordo run): {step * 1000:.2f} ms (target 3 ms)")
    print(f"idle worker over {args.idle:.0f}s: {qps:.2f} transactions/s, {cpu * 100:.2f}% of a CPU")


if __name__ == "__main__":
    main()
