"""``ordo gc`` over a large SQLite history: time and peak memory (issue #5).

Run: ``.venv/bin/python bench/gc.py [--executions N] [--batch N]``. Creates a scratch
SQLite store with N (default 200,000) ended root executions older than the retention
(each: two task runs a -> b, a dependency, two attempts, an output and a metric, two log
lines per attempt and seven state-history rows; every tenth with a child execution),
plus 1,000 recent and 100 saved ones that must stay. The rows are written with bulk SQL
in this script (not through ordo: that would take hours). Then it runs the real ``ordo
gc --dry-run`` and ``ordo gc`` commands in fresh processes and prints their wall time and
peak RSS (``wait4``), the rows deleted and the file size before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = 86_400.0

# ``n(i)`` counts 1..N; an execution i has task runs 2i-1 (a) and 2i (b), whose attempts
# have the same ids. Children are executions N+1.. with no task runs.
COUNT = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
BULK = [
    (
        "INSERT INTO executions (id, revision_id, namespace, flow_id, state, inputs, labels, "
        "pending, created_at, started_at, ended_at, parent_id, root_id, outputs, dev) "
        "SELECT i, 1, 'bench', 'gc', 'SUCCESS', '{\"day\":\"2026-01-01\"}', '{}', 0, "
        ":end - 5 - (:n - i), :end - 5 - (:n - i), :end - (:n - i), NULL, i, '{}', i % 7 = 0 "
        "FROM n"
    ),
    (
        "INSERT INTO task_runs (id, execution_id, task_id, state, pending_deps, allow_failure, "
        "attempts, last_attempt_id, created_at, started_at, ended_at, queue) "
        "SELECT 2 * i - 1 + k, i, CASE k WHEN 0 THEN 'a' ELSE 'b' END, 'SUCCESS', 0, 0, 1, "
        "2 * i - 1 + k, :end - 5, :end - 4, :end - 1, 'default' "
        "FROM n, (SELECT 0 AS k UNION ALL SELECT 1)"
    ),
    "INSERT INTO task_run_deps (upstream_id, task_run_id) SELECT 2 * i - 1, 2 * i FROM n",
    (
        "INSERT INTO attempts (id, task_run_id, execution_id, number, state, worker_id, "
        "started_at, ended_at, exit_code, cpu_seconds, peak_rss_kb) "
        "SELECT 2 * i - 1 + k, 2 * i - 1 + k, i, 1, 'SUCCESS', 'bench:1:x', :end - 4, "
        ":end - 1, 0, 0.01, 20000 FROM n, (SELECT 0 AS k UNION ALL SELECT 1)"
    ),
    (
        "INSERT INTO outputs (attempt_id, task_run_id, execution_id, key, value) "
        "SELECT 2 * i - 1, 2 * i - 1, i, 'rows', '1234' FROM n"
    ),
    (
        "INSERT INTO metrics (attempt_id, task_run_id, execution_id, name, kind, value, tags, at) "
        "SELECT 2 * i, 2 * i, i, 'rows', 'counter', 1234, '{}', :end FROM n"
    ),
    (
        "INSERT INTO logs (execution_id, attempt_id, at, stream, line) "
        "SELECT i, 2 * i - 1 + (k % 2), :end, 'stdout', 'processing batch ' || i || ' of the day' "
        "FROM n, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)"
    ),
    (
        "INSERT INTO state_history (execution_id, task_run_id, from_state, to_state, at) "
        "SELECT i, CASE WHEN k < 3 THEN NULL ELSE 2 * i - 1 + (k % 2) END, NULL, 'RUNNING', "
        ":end FROM n, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 "
        "UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6)"
    ),
    (
        "INSERT INTO executions (id, revision_id, namespace, flow_id, state, inputs, labels, "
        "pending, created_at, started_at, ended_at, parent_id, root_id, dev) "
        "SELECT :n + i, 1, 'bench', 'gc', 'SUCCESS', '{}', '{}', 0, :end - 4 - (:n - 10 * i), "
        ":end - 4 - (:n - 10 * i), :end - 1 - (:n - 10 * i), 10 * i, 10 * i, (10 * i) % 7 = 0 "
        "FROM n WHERE i <= :n / 10"
    ),
]


def build(path: Path, executions: int) -> None:
    """The store (migrated by ordo itself), then the history in bulk."""
    from ordo.engine import open_store
    from ordo.model import Flow, Task

    store = open_store(str(path))
    flow = Flow(
        id="gc",
        namespace="bench",
        tasks=(
            Task(id="a", type="shell", spec={"command": "true"}),
            Task(id="b", type="shell", spec={"command": "true"}, depends_on=("a",)),
        ),
        base_dir="/tmp",
    )
    store.add_revision(flow, "bench", "bench-gc", time.time())
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    old_end = time.time() - 40 * DAY
    conn.execute("BEGIN")
    for sql in BULK:
        text = COUNT + sql.replace(":n", str(executions)).replace(":end", repr(old_end))
        conn.execute(text, (executions,))
    # recent executions (kept by the 30-day retention) and saved old ones
    recent, saved = 1_000, 100
    first = executions + executions // 10 + 1
    conn.execute(
        "INSERT INTO executions (id, revision_id, namespace, flow_id, state, inputs, labels, "
        "pending, created_at, started_at, ended_at, root_id, saved_name, saved_at) "
        + "SELECT id, 1, 'bench', 'gc', 'SUCCESS', '{}', '{}', 0, ended - 5, ended - 5, ended, "
        "id, name, CASE WHEN name IS NULL THEN NULL ELSE ended END FROM ("
        "WITH RECURSIVE m(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM m WHERE j < ?) "
        "SELECT ? + j AS id, CASE WHEN j < ? THEN ? ELSE ? END AS ended, "
        "CASE WHEN j < ? THEN NULL ELSE 'saved-' || j END AS name FROM m)",
        (recent + saved - 1, first, recent, time.time() - DAY, old_end, recent),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and standard output of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.stdout.close()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err}")
    return elapsed, usage.ru_maxrss, out


def size(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return total / 1024 / 1024


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM executions").fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-gc-"))
    db = work / "ordo.db"
    env = {**os.environ, "ORDO_HOME": str(work / "home"), "ORDO_DB": str(db)}
    for name in ("ORDO_RETENTION_DAYS", "ORDO_RETENTION_DEV_DAYS"):
        env.pop(name, None)
    try:
        started = time.perf_counter()
        build(db, args.executions)
        print(
            f"history: {count(db):,} executions, {size(db):.1f} MB, built in "
            f"{time.perf_counter() - started:.1f}s"
        )
        batch = ["--batch", str(args.batch)]
        dry_s, dry_kb, _ = run([ordo, "gc", "--dry-run", "--json", *batch], env)
        gc_s, gc_kb, out = run([ordo, "gc", "--json", *batch], env)
        doc = json.loads(out)
        rows = sum(doc["rows"].values())
        print(f"{'command':<16}{'seconds':>10}{'peak RSS':>12}")
        print(f"{'gc --dry-run':<16}{dry_s:>10.2f}{dry_kb / 1024:>9.1f} MB")
        print(f"{'gc':<16}{gc_s:>10.2f}{gc_kb / 1024:>9.1f} MB")
        print(
            f"deleted {doc['executions']:,} executions ({doc['dev_executions']:,} dev) and "
            f"{rows:,} rows in {doc['batches']:,} batches; "
            f"{(doc['reclaimed_bytes'] or 0) / 1024 / 1024:.1f} MB given back"
        )
        print(
            f"after: {count(db):,} executions, {size(db):.1f} MB; "
            f"{doc['executions'] / gc_s:,.0f} executions/s"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
