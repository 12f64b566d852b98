"""Composition benchmarks (issue #4): a 5,000-item for_each and nested subflows.

Run: ``.venv/bin/python bench/composition.py [--repeat N]``.

- F1: ``ordo run`` of one no-op python task with ``for_each`` over 5,000 items and
  ``concurrency: 2`` (``--workers 2``), in a fresh process on SQLite: wall time and peak
  RSS. Beside it, in the same run, the same 5,000 no-op tasks written out as a flat flow
  (no for_each), so the ratio is the cost of forking.
- F2: a chain of 3 nested subflows (a -> b -> c -> d, d one no-op python task) run in one
  process against a real SQLite file, beside d alone; overhead per child execution =
  (median(a) - median(d)) / 3.
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

ITEMS = 5000
TARGETS = {"F1": 5.0, "F1 peak RSS MB": 150.0, "F2 per child": 0.020}


def write_flows(folder: Path) -> None:
    (folder / "noop.py").write_text("def noop(**kw):\n    return None\n")
    (folder / "f1.yaml").write_text(
        "id: f1\ntasks:\n  - id: each\n    type: python\n    function: 'noop:noop'\n"
        f"    for_each: '{{{{ range({ITEMS}) | list }}}}'\n    concurrency: 2\n"
        "    with: {i: '{{ fork.value }}'}\n"
    )
    lines = ["id: flat", "tasks:"]
    lines += [f"  - {{id: t{i}, type: python, function: 'noop:noop'}}" for i in range(ITEMS)]
    (folder / "flat.yaml").write_text("\n".join(lines) + "\n")
    (folder / "d.yaml").write_text(
        "id: d\ntasks:\n  - {id: leaf, type: python, function: 'noop:noop'}\n"
    )
    for name, child in (("c", "d"), ("b", "c"), ("a", "b")):
        (folder / f"{name}.yaml").write_text(
            f"id: {name}\ntasks:\n  - {{id: sub, type: flow, flow: {child}}}\n"
        )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of the largest process in the tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return elapsed, usage.ru_maxrss


def fork_figures(work: Path, repeat: int) -> dict[str, float]:
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    env = {**os.environ, "ORDO_HOME": str(work / "home")}
    env.pop("ORDO_DB", None)
    found: dict[str, float] = {}
    for name in ("f1", "flat"):
        cmd = [ordo, "run", str(work / f"{name}.yaml"), "--quiet", "--workers", "2"]
        timed(cmd, env)  # stores the revision
        runs = [timed(cmd, env) for _ in range(repeat)]
        found[name] = statistics.median(r[0] for r in runs)
        found[f"{name} rss"] = max(r[1] for r in runs) / 1024
    return found


def nested_figures(work: Path, repeat: int) -> dict[str, float]:
    from ordo import engine
    from ordo.engine import open_store
    from ordo.runners import make_runners
    from ordo.worker import Worker, WorkerSettings

    store = open_store(str(work / "nested.db"))
    revisions = {n: engine.register_flow(store, work / f"{n}.yaml", time.time()) for n in "dcba"}
    settings = WorkerSettings(slots=2)
    runners = make_runners(2)
    worker = Worker(store, runners, settings=settings)

    def once(name: str) -> float:
        start = time.perf_counter()
        ex_id = engine.start_execution(store, revisions[name], {}, time.time())
        state = worker.run_execution(ex_id)
        assert state.value == "SUCCESS", state
        return time.perf_counter() - start

    try:
        once("a")  # warm: python host started, modules imported
        a = statistics.median(once("a") for _ in range(repeat * 5))
        d = statistics.median(once("d") for _ in range(repeat * 5))
    finally:
        worker.close()
        store.close()
    return {"a": a, "d": d}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from run import compile_ordo

    compile_ordo()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-composition-"))
    try:
        write_flows(work)
        fork = fork_figures(work, args.repeat)
        nested = nested_figures(work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_child = (nested["a"] - nested["d"]) / 3
    rows = [
        ("F1 for_each 5,000 items", f"{fork['f1']:.2f} s", "5.00 s", fork["f1"] <= 5.0),
        ("  same tasks, flat flow", f"{fork['flat']:.2f} s", "-", None),
        ("  ratio for_each / flat", f"{fork['f1'] / fork['flat']:.2f}", "-", None),
        ("F1 peak RSS", f"{fork['f1 rss']:.1f} MB", "150 MB", fork["f1 rss"] <= 150.0),
        ("  flat flow peak RSS", f"{fork['flat rss']:.1f} MB", "-", None),
        ("F2 a -> b -> c -> d", f"{nested['a'] * 1000:.1f} ms", "-", None),
        ("  d alone", f"{nested['d'] * 1000:.1f} ms", "-", None),
        ("F2 per child execution", f"{per_child * 1000:.2f} ms", "20 ms", per_child <= 0.020),
    ]
    print(f"{'figure':<28}{'measured':>12}{'target':>10}  ok")
    for name, shown, goal, ok in rows:
        mark = "-" if ok is None else ("yes" if ok else "NO")
        print(f"{name:<28}{shown:>12}{goal:>10}  {mark}")


if __name__ == "__main__":
    main()
