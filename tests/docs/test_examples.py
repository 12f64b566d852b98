"""Every example in the README and docs/*.md runs as written.

Each page is one test, run in a fresh folder (its own ``ORDO_HOME``, so its own store)
holding a copy of ``examples/``. The page's fenced blocks are taken in order:

- a block preceded by ``<!-- file: NAME -->`` is written to ``NAME`` (flow files, Python
  modules, ``settings.toml`` — ``settings.toml`` goes to ``$ORDO_HOME``);
- a ``yaml`` or ``json`` block that is a whole flow (it has ``id`` and ``tasks``) and
  names no file must pass ``ordo validate``;
- the lines of a ``sh`` block that run ``ordo`` (alone, in a pipe or in ``$(...)``) are
  run with bash (a line's ``# comment`` is dropped); other lines (``pip install``) are not;
- in a ``console`` block, each such ``$ ...`` line is run, and so are ``$ touch``,
  ``rm``, ``mkdir``, ``cp``, ``mv``, ``echo``, ``printf``, ``cat`` and ``sed`` lines (files
  the next commands see); the lines under a command up to the next ``$`` are the output
  (standard output and error) it must show (see :func:`matches`).

An ``ordo`` command must exit 0, or the code ``<!-- exit: N -->`` before the block gives
(the file commands, 0). A block
that cannot run here (a server, a PostgreSQL URL, a git remote, a CI file) is preceded by
``<!-- skip: REASON -->``. ``<!-- env: NAME=VALUE -->`` sets a variable for the page's
commands from there on (a value the reader would have in their environment).
DEVELOPERS.md describes these markers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from support import patient

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!--\s*(file|skip|exit|env):\s*(.*?)\s*-->")
#: A command line that runs ordo (alone, or in a pipe or ``$(...)``).
RUNS_ORDO = re.compile(r"(^|[|;&(]\s*)ordo\s")
#: Other commands a ``console`` block may run: changes to files the next commands see.
FILE_COMMAND = re.compile(r"^(touch|rm|mkdir|cp|mv|echo|printf|cat|sed) ")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    """A fenced block: its language, text, first line number and markers."""

    lang: str
    text: str
    line: int
    marks: dict[str, str] = field(default_factory=dict)


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the markers in the lines just above it
    (only blank lines and markers between them and the fence)."""
    found: list[Block] = []
    lines = page.read_text().split("\n")
    marks: dict[str, str] = {}
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            start = i
            i += 1
            body = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            found.append(Block(fence.group(1), "\n".join(body) + "\n", start + 1, marks))
            marks = {}
        else:
            marker = MARKER.search(lines[i])
            if marker and marker.group(1) == "env" and "env" in marks:  # several add up
                marks["env"] += "\n" + marker.group(2)
            elif marker:
                marks[marker.group(1)] = marker.group(2)
            elif lines[i].strip():
                marks = {}
        i += 1
    return found


@dataclass
class Command:
    """One ``ordo`` command of a block, and the output the doc shows for it."""

    line: int
    text: str
    shown: list[str]
    exit: int


def commands(block: Block) -> list[Command]:
    exit_code = int(block.marks.get("exit", "0"))
    found: list[Command] = []
    if block.lang == "sh":
        for n, line in enumerate(block.text.split("\n")):
            text = _strip_comment(line)
            if RUNS_ORDO.search(text):
                found.append(Command(block.line + 1 + n, text, [], exit_code))
    elif block.lang == "console":
        current: Command | None = None
        for n, line in enumerate(block.text.split("\n")):
            if line.startswith("$ "):
                text = _strip_comment(line[2:])
                code = exit_code if RUNS_ORDO.search(text) else 0
                current = Command(block.line + 1 + n, text, [], code)
                if RUNS_ORDO.search(text) or FILE_COMMAND.match(text):
                    found.append(current)
            elif current is not None:
                current.shown.append(line)
    return found


def _strip_comment(line: str) -> str:
    """``ordo run x.yaml   # what it does`` -> ``ordo run x.yaml`` (a ``#`` inside quotes
    stays)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


#: What differs from run to run, replaced by a placeholder on both sides.
VARYING = [
    # tokens first: a token's random text may hold what looks like a duration (``-0s``)
    (re.compile(r"\bordo_[A-Za-z0-9_-]{3,}(\.\.\.)?"), "<token>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d( [A-Z]{3,5}\b)?"), "<time>"),  # local, a zone
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?(ms|s)\b"), "<duration>"),
    (re.compile(r"\b(\d+h)?\d+m\d\ds\b"), "<duration>"),
    (re.compile(r"\b\d+(\.\d+)?(B|KB|MB|GB|KiB|MiB|GiB)\b"), "<size>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hash>"),
    (re.compile(r"(?<![\w:/.])/(?:[\w.@+-]+/)+"), ""),  # the folders of absolute paths
]


def normal(line: str) -> str:
    """A line with times, durations, tokens, hashes and absolute folders replaced, and
    runs of spaces (a table's alignment) made one."""
    for pattern, placeholder in VARYING:
        line = pattern.sub(placeholder, line)
    return " ".join(line.split())


def matches(shown: list[str], output: str) -> str | None:
    """None when every line the doc shows appears in ``output``, in order (other lines
    may come between: a doc may leave lines out, and ``...`` marks where it does);
    else the first line not found."""
    actual = [normal(line) for line in output.split("\n")]
    at = 0
    for line in shown:
        want = normal(line)
        if not want or want in ("...", "…"):
            continue
        if want.endswith("…"):  # a cut line: its beginning must match
            hits = [i for i in range(at, len(actual)) if actual[i].startswith(want[:-1])]
        else:
            hits = [i for i in range(at, len(actual)) if actual[i] == want]
        if not hits:
            return line
        at = hits[0] + 1
    return None


def is_flow(block: Block) -> bool:
    if block.lang not in ("yaml", "json"):
        return False
    try:
        doc = json.loads(block.text) if block.lang == "json" else YAML(typ="safe").load(block.text)
    except Exception:
        return False
    # a flow with `tasks: ...` is an excerpt, not a whole flow
    return isinstance(doc, dict) and "id" in doc and isinstance(doc.get("tasks"), list)


def environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}
    env["ORDO_HOME"] = str(folder / "home")
    env["HOME"] = str(folder)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"  # standard output and error interleaved as on a terminal
    return env


def run_page(page: Path, folder: Path) -> list[str]:
    """Run ``page``'s examples in ``folder``; the problems found, each naming its line."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    (folder / "home").mkdir()
    env = environment(folder)
    name = page.relative_to(ROOT)
    problems: list[str] = []
    for block in blocks(page):
        for assignment in block.marks.get("env", "").splitlines():
            key, _, value = assignment.partition("=")
            env[key] = value
        if "skip" in block.marks:
            assert block.marks["skip"], f"{name}:{block.line}: a skip marker needs a reason"
            continue
        if "file" in block.marks:
            target = block.marks["file"]
            path = folder / "home" / target if target == "settings.toml" else folder / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
            continue
        if is_flow(block):
            path = folder / f"_block_{block.line}.{block.lang}"
            path.write_text(block.text)
            command = Command(block.line, f"ordo validate {path.name}", [], 0)
            problems += check(command, folder, env, name)
            continue
        for command in commands(block):
            problems += check(command, folder, env, name)
    return problems


def check(command: Command, folder: Path, env: dict[str, str], page: Path) -> list[str]:
    try:
        done = subprocess.run(
            ["bash", "-c", command.text],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=patient(120),
        )
    except subprocess.TimeoutExpired:
        return [f"{page}:{command.line}: `{command.text}` did not end (a server? skip it)"]
    output = done.stdout
    where = f"{page}:{command.line}: `{command.text}`"
    if done.returncode != command.exit:
        return [f"{where} exited {done.returncode}, not {command.exit}:\n{output[-2000:]}"]
    missing = matches(command.shown, output)
    if missing is not None:
        return [f"{where} does not show {missing!r}; it shows:\n{output[-3000:]}"]
    return []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_example_of_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    problems = run_page(page, tmp_path)
    assert not problems, "\n\n".join(problems)


def test_the_markers_are_read_and_output_is_compared_line_by_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- file: a.yaml -->\n```yaml\nid: a\n```\n\n"
        "<!-- skip: needs a server -->\n```sh\nordo server\n```\n"
        "<!-- exit: 2 -->\n```console\n$ ordo validate bad.yaml  # a comment\nbad.yaml:1:1: x\n"
        "...\n$ ls\n```\n"
    )
    found = blocks(page)
    assert [(b.lang, b.marks) for b in found] == [
        ("yaml", {"file": "a.yaml"}),
        ("sh", {"skip": "needs a server"}),
        ("console", {"exit": "2"}),
    ]
    [validate] = commands(found[2])
    assert (validate.text, validate.shown, validate.exit) == (
        "ordo validate bad.yaml",
        ["bad.yaml:1:1: x", "..."],
        2,
    )
    shown = ["TASK  STATE", "a     SUCCESS  1  9ms", "execution 1 x: SUCCESS in 2.17s"]
    output = "12:00:01 a RUNNING\nTASK STATE\na SUCCESS 1 31ms\nexecution 1 x: SUCCESS in 40ms\n"
    assert matches(shown, output) is None
    assert matches(["execution 2 x: SUCCESS"], output) == "execution 2 x: SUCCESS"
    assert normal("/tmp/abc/def/flow.yaml:3:1: x") == "flow.yaml:3:1: x"


def test_the_cli_reference_lists_every_command() -> None:
    """docs/cli.md's command table has a row for each command ``ordo --help`` knows
    (``ordo flows history``, or ``ordo flows history`, `show`, `diff`` for several)."""
    from ordo.cli.completion import levels
    from ordo.cli.main import _parser

    text = (ROOT / "docs" / "cli.md").read_text()
    rows = [line for line in text.split("\n") if line.startswith("| [`ordo ")]
    missing = []
    for path, level in levels(_parser()).items():
        if level.commands or path == "ordo":
            continue
        *group, last = path.split()
        if not any(
            f"`{path}" in row or (f"`{' '.join(group)} " in row and f"`{last}`" in row)
            for row in rows
        ):
            missing.append(path)
    assert not missing, f"docs/cli.md's table lacks {missing}"
