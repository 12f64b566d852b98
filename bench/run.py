"""Whole-process benchmarks of ``ordo run`` (issue #2's W0-W3 and peak memory).

Run: ``make bench`` (or ``.venv/bin/python bench/run.py [--repeat N]``). Every figure is a
median over ``--repeat`` runs of the real ``ordo`` command in a fresh process, every
state transition committed to SQLite. A baseline measured in the same run — plain Python
writing one durable SQLite row — is printed beside it, with the ratio.
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

BASELINE = (
    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
    "c.execute('create table if not exists t (x)'); c.execute('insert into t values (1)'); "
    "c.commit()"
)
TARGETS = {"W0": 0.15, "W1 per task": 0.0010, "W2": 0.65, "W3": 0.25, "W2 peak RSS MB": 50.0}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    ordo = shutil.which("ordo", path=str(Path(sys.executable).parent)) or "ordo"
    compile_ordo()
    work = Path(tempfile.mkdtemp(prefix="ordo-bench-"))
    env = {**os.environ, "ORDO_HOME": str(work / "home")}
    env.pop("ORDO_DB", None)
    try:
        flows = write_flows(work)
        base, _ = median_of(
            [sys.executable, "-c", BASELINE, str(work / "base.db")], env, args.repeat
        )
        results: dict[str, float] = {}
        for name, path in flows.items():
            workers = ["--workers", "2"] if name in ("W2", "W3") else []
            cmd = [ordo, "run", str(path), "--quiet", *workers]
            timed(cmd, env)  # first run stores the revision (W0's "already exist")
            seconds, rss = median_of(cmd, env, args.repeat)
            results[name] = seconds
            if name == "W2":
                results["W2 peak RSS MB"] = rss / 1024
        results["W1 per task"] = (results["W1"] - results["W0"]) / 99
        report(results, base)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, float], base: float) -> None:
    print(f"baseline (python + one durable SQLite row): {base * 1000:.1f} ms")
    print(f"{'figure':<16}{'measured':>12}{'target':>10}{'x baseline':>12}  ok")
    for name in ("W0", "W1", "W1 per task", "W2", "W3", "W2 peak RSS MB"):
        value = results[name]
        target = TARGETS.get(name)
        if name.endswith("MB"):
            shown, goal, ratio = f"{value:.1f} MB", f"{target:.0f} MB", "-"
        elif name == "W1 per task":
            shown, goal, ratio = f"{value * 1000:.2f} ms", "1.00 ms", "-"
        else:
            shown = f"{value:.3f} s"
            goal = f"{target:.2f} s" if target else "-"
            ratio = f"{value / base:.1f}"
        ok = "-" if target is None else ("yes" if value <= target else "NO")
        print(f"{name:<16}{shown:>12}{goal:>10}{ratio:>12}  {ok}")


if __name__ == "__main__":
    main()
