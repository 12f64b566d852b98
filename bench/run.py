"""Whole-process benchmarks of ``ordo run`` beside a floor and its peers (issues #2, #17).

Run: ``make bench`` (or ``.venv/bin/python bench/run.py [--repeat N]``). Four workloads,
each a fresh process per run, every figure a median over ``--repeat`` runs:

- W0: one no-op python task; W1: a chain of 100; W2: 500 independent ones + a join
  (2 at a time); W3: 50 shell tasks running ``true`` (2 at a time).

Beside ordo, interleaved run by run (so that a drift of the machine's speed hits all
alike), in the same shapes:

- the floor: plain Python with durable rows, three commits per task (created, running,
  ended) in a SQLite file with ordo's settings (WAL, synchronous=NORMAL), calling the
  no-op function (W0-W2) or running ``true`` (W3), 2 at a time where ordo runs 2;
- Luigi, when ``--luigi PYTHON`` names an interpreter that has it (e.g. a venv made for
  the benchmark: ``python -m venv /tmp/luigi && /tmp/luigi/bin/pip install luigi``;
  never a dependency of ordo). Its tasks write an empty marker file as their output
  (Luigi's way to know a task is done; it keeps no history);
- the seed Executioner, when ``--executioner PATH`` names its ``executioner.py`` (it is
  not on PyPI); its jobs run ``true``.

Then, in this process, the statements ordo sends to its store per task run (W1 per
hop: a chain of 100 against one of 2, and against W0; W2 amortized), on SQLite and,
when reachable, on PostgreSQL (``--pg-url``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASELINE = (
    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
    "c.execute('create table if not exists t (x)'); c.execute('insert into t values (1)'); "
    "c.commit()"
)
WORKLOADS = ("W0", "W1", "W2", "W3")
PARALLEL = {"W0": 1, "W1": 1, "W2": 2, "W3": 2}


def write_flows(folder: Path) -> dict[str, Path]:
    (folder / "noop.py").write_text("def noop():\n    return None\n")
    flows = {
        "W0": _python_chain("w0", 1),
        "W1": _python_chain("w1", 100),
        "W2": _python_fan("w2", 500),
        "W3": _shell_fan("w3", 50),
    }
    paths = {}
    for name, text in flows.items():
        path = folder / f"{name.lower()}.yaml"
        path.write_text(text)
        paths[name] = path
    return paths


def shapes() -> dict[str, list[tuple[str, list[str]]]]:
    """Each workload as ``(task, upstream tasks)`` in an order that respects them."""
    fan = [(f"t{i}", []) for i in range(500)]
    return {
        "W0": [("t0", [])],
        "W1": [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(100)],
        "W2": [*fan, ("join", [t for t, _ in fan])],
        "W3": [(f"t{i}", []) for i in range(50)],
    }


def _python_chain(flow_id: str, n: int) -> str:
    lines = [f"id: {flow_id}", "tasks:"]
    for i in range(n):
        lines.append(
            f"  - {{id: t{i}, type: python, function: 'noop:noop'"
            + (f", depends_on: [t{i - 1}]" if i else "")
            + "}"
        )
    return "\n".join(lines) + "\n"


def _python_fan(flow_id: str, n: int) -> str:
    lines = [f"id: {flow_id}", "tasks:"]
    for i in range(n):
        lines.append(f"  - {{id: t{i}, type: python, function: 'noop:noop'}}")
    deps = ", ".join(f"t{i}" for i in range(n))
    lines.append(f"  - {{id: join, type: python, function: 'noop:noop', depends_on: [{deps}]}}")
    return "\n".join(lines) + "\n"


def _shell_fan(flow_id: str, n: int) -> str:
    lines = [f"id: {flow_id}", "tasks:"]
    for i in range(n):
        lines.append(f"  - {{id: t{i}, type: shell, command: 'true'}}")
    return "\n".join(lines) + "\n"


# The floor: the least a durable engine does per task, in plain Python. argv: the
# workload's shape as JSON, the SQLite file, tasks at a time, "python" or "shell".
FLOOR = r"""
import json, sqlite3, subprocess, sys, threading
sys.path.insert(0, sys.argv[5])
from noop import noop
shape, path, slots, kind = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, task TEXT, state TEXT)")
lock, done, ready = threading.Lock(), set(), threading.Condition()
def commit(sql, args):
    with lock:
        cur = db.execute(sql, args)
        return cur.lastrowid
def run(task):
    rid = commit("INSERT INTO runs (task, state) VALUES (?, 'CREATED')", (task,))
    commit("UPDATE runs SET state = 'RUNNING' WHERE id = ?", (rid,))
    if kind == "shell":
        subprocess.run(["true"], check=True)
    else:
        noop()
    commit("UPDATE runs SET state = 'SUCCESS' WHERE id = ?", (rid,))
    with ready:
        done.add(task)
        ready.notify_all()
def serve(queue):
    while queue:
        task, deps = queue.pop(0)
        with ready:
            ready.wait_for(lambda: all(d in done for d in deps))
        run(task)
queues = [shape[i::slots] for i in range(slots)]
threads = [threading.Thread(target=serve, args=(q,)) for q in queues]
for t in threads: t.start()
for t in threads: t.join()
"""

# Luigi: one task class; each task's output is an empty marker file. argv: shape JSON,
# marker folder, workers, "python" or "shell", the folder of noop.py.
LUIGI = r"""
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[5])
import luigi
from noop import noop
shape, folder, workers, kind = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
deps = dict((t, d) for t, d in shape)
class Step(luigi.Task):
    name = luigi.Parameter()
    def requires(self):
        return [Step(name=d) for d in deps[self.name]]
    def output(self):
        return luigi.LocalTarget(os.path.join(folder, self.name))
    def run(self):
        if kind == "shell":
            subprocess.run(["true"], check=True)
        else:
            noop()
        open(self.output().path, "w").close()
roots = [t for t in deps if not any(t in d for d in deps.values())]
ok = luigi.build([Step(name=t) for t in roots], workers=workers, local_scheduler=True,
                 log_level="WARNING")
sys.exit(0 if ok else 1)
"""


def compile_ordo() -> None:
    """Byte-compile the ordo package, as ``pip install`` leaves it: with
    PYTHONDONTWRITEBYTECODE set (as on this machine) every process would compile every
    module again, which is not what users run."""
    import compileall

    import ordo

    compileall.compile_dir(os.path.dirname(ordo.__file__), quiet=1)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of the largest single process in the tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return elapsed, usage.ru_maxrss


def median_of(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    runs = [timed(cmd, env) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


Engine = Callable[[str], list[str]]


def engines(args: argparse.Namespace, work: Path, flows: dict[str, Path]) -> dict[str, Engine]:
    """Each engine as a function from a workload to the command that runs it once."""
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    shape = {name: json.dumps(s) for name, s in shapes().items()}
    kind = {"W0": "python", "W1": "python", "W2": "python", "W3": "shell"}
    found: dict[str, Engine] = {
        "floor": lambda w: [
            sys.executable,
            "-c",
            FLOOR,
            shape[w],
            str(work / f"floor-{w}.db"),
            str(PARALLEL[w]),
            kind[w],
            str(work),
        ],
        "ordo": lambda w: [
            ordo,
            "run",
            str(flows[w]),
            "--quiet",
            *(["--workers", "2"] if PARALLEL[w] > 1 else []),
        ],
    }
    if args.luigi:
        markers = work / "luigi"

        def luigi(w: str) -> list[str]:
            shutil.rmtree(markers, ignore_errors=True)  # a fresh run every time
            markers.mkdir()
            return [args.luigi, "-c", LUIGI, shape[w], str(markers), str(PARALLEL[w])]

        found["luigi"] = lambda w: [*luigi(w), kind[w], str(work)]
    if args.executioner:
        configs = executioner_configs(work)
        found["executioner"] = lambda w: [
            sys.executable,
            args.executioner,
            "-c",
            str(configs[w]),
            *(["--parallel", "--workers", "2"] if PARALLEL[w] > 1 else []),
        ]
    return found


def executioner_configs(work: Path) -> dict[str, Path]:
    paths = {}
    for name, shape in shapes().items():
        jobs = [
            {"id": t, "command": "true", **({"dependencies": deps} if deps else {})}
            for t, deps in shape
        ]
        path = work / f"executioner-{name}.json"
        doc = {"application_name": f"bench_{name}", "working_dir": str(work), "jobs": jobs}
        path.write_text(json.dumps(doc))
        paths[name] = path
    return paths


def measure(
    found: dict[str, Engine], env: dict[str, str], repeat: int
) -> tuple[dict[str, dict[str, float]], float]:
    """Median seconds per workload and engine, the engines interleaved run by run; and
    the peak RSS (MB) of ordo's largest process in W2."""
    figures: dict[str, dict[str, float]] = {}
    peak = 0
    for w in WORKLOADS:
        runs: dict[str, list[float]] = {name: [] for name in found}
        for command in found.values():
            timed(command(w), env)  # warm-up: ordo stores the revision
        for _ in range(repeat):
            for name, command in found.items():
                seconds, rss = timed(command(w), env)
                runs[name].append(seconds)
                if name == "ordo" and w == "W2":
                    peak = max(peak, rss)
        figures[w] = {name: statistics.median(values) for name, values in runs.items()}
    return figures, peak / 1024


def report(figures: dict[str, dict[str, float]], peak_mb: float, base: float) -> None:
    names = list(next(iter(figures.values())))
    peers = [n for n in names if n not in ("floor", "ordo")]
    print(f"baseline (python + one durable SQLite row): {base * 1000:.1f} ms")
    header = "".join(f"{n:>13}" for n in names)
    ratios = "  ordo/floor" + ("  ordo/best peer" if peers else "")
    print(f"{'workload':<10}{header}{ratios}")
    for w, row in figures.items():
        cells = "".join(f"{row[n]:>12.3f}s" for n in names)
        line = f"{w:<10}{cells}{row['ordo'] / row['floor']:>12.2f}"
        if peers:
            best = min(row[p] for p in peers)
            line += f"{row['ordo'] / best:>16.2f}"
        print(line)
    hop = {n: (figures["W1"][n] - figures["W0"][n]) / 99 * 1000 for n in names}
    print("W1 per hop (ms): " + ", ".join(f"{n} {v:.2f}" for n, v in hop.items()))
    print(f"W2 peak RSS of ordo's largest process: {peak_mb:.1f} MB")
    if not peers:
        print("(no peers: give --luigi PYTHON and/or --executioner PATH)")


def statements(flows: dict[str, Path], db: str) -> dict[str, float]:
    """Statements ordo sends to its store (BEGIN/COMMIT/ROLLBACK and SAVEPOINTs not
    counted) for W0, W1 and W2 run in this process; per hop and amortized. A hop is
    what one more task of the chain costs: W1 against a chain of 2 (against W0, the
    execution's start also differs: it stores W1's 99 dependencies, in one statement)."""
    logging.getLogger("ordo").setLevel(logging.ERROR)  # a dropped scratch database
    two = flows["W1"].with_name("w1_two.yaml")
    two.write_text(_python_chain("w1two", 2))
    paths = {**flows, "W1 of 2": two}
    names = ("W0", "W1 of 2", "W1", "W2")
    for w in names:
        _count_statements(paths[w], db)  # the first run of each flow stores it
    counts = {w: _count_statements(paths[w], db) for w in names}
    return {
        "W0": counts["W0"],
        "W1 per hop": (counts["W1"] - counts["W1 of 2"]) / 98,
        "W1 against W0": (counts["W1"] - counts["W0"]) / 99,
        "W2 per task run": counts["W2"] / 501,
    }


def _count_statements(flow: Path, db: str) -> int:
    """Runs ``ordo run FLOW`` in this process with the database drivers' statement
    entry points wrapped (whatever shape the store takes, its SQL goes through them)."""
    import sqlite3

    import psycopg

    from ordo.cli.main import main as ordo_main
    from ordo.store.wire import Wire

    count = 0
    skip = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "--")

    def seen(sql: object) -> None:
        nonlocal count
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        if not text.lstrip().upper().startswith(skip):
            count += 1

    real_connect = sqlite3.connect

    def connect(*a: object, **kw: object) -> sqlite3.Connection:
        conn = real_connect(*a, **kw)  # type: ignore[arg-type]
        conn.set_trace_callback(seen)
        return conn

    originals = {
        (psycopg.Cursor, "execute"): psycopg.Cursor.execute,
        (psycopg.Cursor, "executemany"): psycopg.Cursor.executemany,
        (Wire, "run"): Wire.run,
    }

    def wrap(real: Callable[..., object], many: bool) -> Callable[..., object]:
        def call(self: object, query: object, params: object = None, **kw: object) -> object:
            if many and params is not None:
                for _ in params:  # type: ignore[attr-defined]
                    seen(query)
            else:
                seen(query)
            return real(self, query, params, **kw)

        return call

    def run(wire: Wire, batch: object) -> object:  # the store's PostgreSQL batches
        for text, _ in batch:
            seen(text)
        return originals[(Wire, "run")](wire, batch)

    sqlite3.connect = connect  # type: ignore[assignment]
    psycopg.Cursor.execute = wrap(psycopg.Cursor.execute, False)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = wrap(psycopg.Cursor.executemany, True)  # type: ignore[method-assign]
    Wire.run = run  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its summary
            code = ordo_main(["run", str(flow), "--quiet", "--db", db, "--workers", "2"])
    finally:
        sqlite3.connect = real_connect
        for (cls, attr), real in originals.items():
            setattr(cls, attr, real)
    if code != 0:
        raise SystemExit(f"ordo run {flow} failed ({code})")
    return count


def postgres_url(admin_url: str) -> tuple[str, str] | None:
    """A scratch database on the server, or None when it cannot be reached."""
    import uuid

    import psycopg

    name = f"ordo_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error:
        return None
    return name, f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--luigi", metavar="PYTHON", help="an interpreter that has luigi")
    parser.add_argument("--executioner", metavar="PATH", help="the seed's executioner.py")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "ORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server for the statement counts (skipped when unreachable)",
    )
    parser.add_argument("--only-statements", action="store_true", help="skip the timings")
    args = parser.parse_args()
    compile_ordo()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-"))
    env = {**os.environ, "ORDO_HOME": str(work / "home")}
    env.pop("ORDO_DB", None)
    os.environ["ORDO_HOME"] = env["ORDO_HOME"]
    try:
        flows = write_flows(work)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if not args.only_statements:
            base, _ = median_of(
                [sys.executable, "-c", BASELINE, str(work / "base.db")], env, args.repeat
            )
            figures, peak = measure(engines(args, work, flows), env, args.repeat)
            report(figures, peak, base)
        backends = {"sqlite": str(work / "count.db")}
        scratch = postgres_url(args.pg_url)
        if scratch:
            backends["postgresql"] = scratch[1]
        try:
            print("statements per task run (without BEGIN/COMMIT):")
            for backend, db in backends.items():
                got = statements(flows, db)
                print(
                    f"  {backend:<11} W0 {got['W0']:.0f} in all, "
                    f"W1 {got['W1 per hop']:.2f} per hop "
                    f"({got['W1 against W0']:.2f} against W0), "
                    f"W2 {got['W2 per task run']:.2f} per task run"
                )
            if not scratch:
                print(f"  postgresql  skipped: {args.pg_url} cannot be reached")
        finally:
            if scratch:
                drop_database(args.pg_url, scratch[0])
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
