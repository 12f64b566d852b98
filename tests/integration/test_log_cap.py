"""Output past the log cap: kept up to the cap, then drained and counted, not split."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from support import run_file

from ordo.model import State
from ordo.store import Store

MB50 = 50 * 1024 * 1024
LINE = "x" * 99  # 100 bytes with its newline
DROPPED = re.compile(
    r"\[ordo: (\d+) more bytes \((\d+) lines\) of output after the cap were dropped\]"
)


def run(store: Store, folder: Path, text: str, cap: int) -> tuple[int, State]:
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return run_file(store, folder, path, max_log_bytes=cap, log_batch_lines=500)


def task_lines(store: Store, ex_id: int, task: str) -> list[str]:
    (run,) = [r for r in store.task_runs(ex_id) if r.task_id == task]
    return [ln.line for ln in store.logs(ex_id, attempt_ids=[run.last_attempt_id or 0])]


def kept_and_dropped(store: Store, ex_id: int, task: str) -> tuple[list[str], int, int]:
    lines = task_lines(store, ex_id, task)
    found = DROPPED.fullmatch(lines[-1])
    assert found, lines[-3:]
    return lines[:-1], int(found[1]), int(found[2])


def test_a_shell_task_printing_50_mb_keeps_the_cap_and_counts_the_rest(
    store: Store, tmp_path: Path
) -> None:
    cap = 200_000
    ex_id, final = run(
        store,
        tmp_path,
        f"""
        id: loud
        tasks:
          - id: talk
            type: shell
            command: yes {LINE} | head -c {MB50}
    """,
        cap,
    )
    assert final is State.SUCCESS
    kept, size, lines = kept_and_dropped(store, ex_id, "talk")
    assert kept[-1] == f"[ordo: output truncated after {cap} bytes; the rest was not kept]"
    assert set(kept[:-1]) == {LINE}
    assert len(kept[:-1]) == cap // 100
    assert len(kept[:-1]) * 100 + size == MB50  # every byte is either kept or counted
    assert len(kept[:-1]) + lines == MB50 // 100


def test_a_python_task_past_the_cap_ends_and_its_host_serves_the_next_task(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "loud.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            def talk():
                block = ({LINE!r} + "\\n") * 10_000
                for _ in range({MB50} // len(block)):
                    sys.stdout.write(block)
                print("last words", file=sys.stderr, end="")
                return {{"said": "plenty"}}

            def after():
                print("still here")
                return {{"ok": True}}
            """
        )
    )
    cap = 100_000
    ex_id, final = run(
        store,
        tmp_path,
        """
        id: loudpy
        tasks:
          - {id: talk, type: python, function: "loud:talk"}
          - {id: after, type: python, function: "loud:after", depends_on: [talk]}
    """,
        cap,
    )
    assert final is State.SUCCESS
    kept, size, lines = kept_and_dropped(store, ex_id, "talk")
    assert kept[-1] == f"[ordo: output truncated after {cap} bytes; the rest was not kept]"
    # every byte is either kept or counted; the unfinished last line holds no newline
    expected = (MB50 // 1_000_000) * 1_000_000 + len("last words")
    assert (len(kept) - 1) * 100 + size == expected
    assert len(kept) - 1 + lines == (MB50 // 1_000_000) * 10_000
    assert task_lines(store, ex_id, "after") == ["still here"]
