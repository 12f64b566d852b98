"""Flows written in Python against the same shapes in YAML (issue #19), all in one run.

Run: ``.venv/bin/python bench/python_flows.py [--repeat N] [--steps N]``. Prints:

- ``import ordo``: ordo's own import time (``python -X importtime``; goal ≤ 5 ms);
- ``ordo.run`` of a one-task YAML flow from a Python process that has run one already
  (goal ≤ 30 ms);
- a ``@flow`` calling N no-op ``@task``s one after another, per task, against the W1
  chain of N YAML python tasks per hop (goal ≤ 1.5x);
- N ``.submit()``ed at once with 2 slots against W2's N independent YAML python tasks
  (goal ≤ 1.5x);
- replay: the flow function run again after its N steps completed (its attempt lost),
  until it reaches step N + 1 (goal ≤ 0.5 s).

Each figure is a median over ``--repeat`` runs, every run on a fresh SQLite store in a
temporary ORDO_HOME, the shapes interleaved run by run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ordo
from ordo.client import _close_shared as close_shared

NOOP = "def noop():\n    return None\n"

PY_FLOWS = """
from ordo import flow, task, this


@task
def noop() -> None:
    return None


@flow(id="chain")
def chain(n: int = 100) -> dict:
    for _ in range(n):
        noop()
    return {"n": n}


@flow(id="fan")
def fan(n: int = 500) -> dict:
    futures = [noop.submit() for _ in range(n)]
    for f in futures:
        f.result()
    return {"n": n}


@flow(id="replay")
def replay(n: int = 500) -> dict:
    import os, signal, time
    if os.path.exists("replayed"):  # run again: from here to step n + 1
        with open("began", "w") as f:
            f.write(repr(time.time()))
    for _ in range(n):
        noop()
    if not os.path.exists("replayed"):
        open("replayed", "w").close()
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    with open("reached", "w") as f:
        f.write(repr(time.time()))
    return {"n": n}
"""


def yaml_chain(n: int) -> str:
    lines = ["id: ychain", "tasks:"]
    for i in range(n):
        dep = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, type: python, function: 'noop:noop'{dep}}}")
    return "\n".join(lines) + "\n"


def yaml_fan(n: int) -> str:
    lines = ["id: yfan", "tasks:"]
    lines += [f"  - {{id: t{i}, type: python, function: 'noop:noop'}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def import_ms() -> float:
    """ordo's own import time (ms), the lowest of a few."""
    found = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import ordo"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        ).stderr
        own = [
            int(m.group(1))
            for m in re.finditer(r"\|\s*(\d+)\s*\|\s*(ordo\S*)$", out, re.M)
            if m.group(2) == "ordo"
        ]
        found.append((own[0] if own else 0) / 1000)
    return min(found)


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    n = args.steps
    print(f"import ordo (own): {import_ms():.2f} ms (goal <= 5)")
    cells: dict[str, list[float]] = {k: [] for k in ("one", "ychain", "pychain", "yfan", "pyfan")}
    replays: list[float] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            one_run(Path(tmp), n, cells, replays)
    med = {k: statistics.median(v) for k, v in cells.items()}
    print(f"ordo.run of a one-task YAML flow (warm): {med['one'] * 1000:.1f} ms (goal <= 30)")
    per_y = med["ychain"] / n * 1000
    per_p = med["pychain"] / n * 1000
    print(
        f"sequential, per task: @task {per_p:.2f} ms, YAML chain {per_y:.2f} ms, "
        f"ratio {per_p / per_y:.2f} (goal <= 1.5)"
    )
    print(
        f"parallel ({n} with 2 slots): .submit() {med['pyfan']:.2f} s, YAML fan "
        f"{med['yfan']:.2f} s, ratio {med['pyfan'] / med['yfan']:.2f} (goal <= 1.5)"
    )
    replayed = statistics.median(replays)
    print(f"replay of {n} completed steps to step {n + 1}: {replayed:.2f} s (goal <= 0.5)")


def one_run(folder: Path, n: int, cells: dict[str, list[float]], replays: list[float]) -> None:
    """Every shape once, in one fresh store."""
    (folder / "noop.py").write_text(NOOP)
    (folder / "flows.py").write_text(PY_FLOWS)
    one = "id: one\ntasks:\n  - {id: t, type: python, function: 'noop:noop'}\n"
    (folder / "one.yaml").write_text(one)
    (folder / "ychain.yaml").write_text(yaml_chain(n))
    (folder / "yfan.yaml").write_text(yaml_fan(n))
    db = str(folder / "ordo.db")
    ordo.run(folder / "one.yaml", db=db)  # warm: imports, python host, store
    cells["one"].append(timed(lambda: ordo.run(folder / "one.yaml", db=db)))
    close_shared()
    with ordo.Client(db=db) as client:
        client.run(folder / "flows.py:chain", {"n": 2})  # registered before timing
        client.run(folder / "ychain.yaml")
        cells["ychain"].append(timed(lambda: client.run(folder / "ychain.yaml")))
        cells["pychain"].append(timed(lambda: client.run(folder / "flows.py:chain", {"n": n})))
        cells["yfan"].append(timed(lambda: client.run(folder / "yfan.yaml", workers=2)))
        pyfan = folder / "flows.py:fan"
        cells["pyfan"].append(timed(lambda: client.run(pyfan, {"n": n}, workers=2)))
    replays.append(replay_seconds(folder, db, n))


def replay_seconds(folder: Path, db: str, n: int) -> float:
    """Seconds the flow function, run again (``ordo resume``) after its worker died
    past ``n`` completed steps, takes from its top to step ``n + 1``."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "ordo.cli.main", "--db", db]
    subprocess.run(
        [*cmd, "run", "flows.py:replay", "-i", f"n={n}", "-q"],
        cwd=folder,
        env=env,
        capture_output=True,
    )
    with ordo.Client(db=db) as client:
        ex_id = max(e.id for e in client.list(flow="replay"))
    subprocess.run([*cmd, "resume", str(ex_id), "-q"], cwd=folder, env=env, capture_output=True)
    began = float((folder / "began").read_text())
    return float((folder / "reached").read_text()) - began


if __name__ == "__main__":
    main()
