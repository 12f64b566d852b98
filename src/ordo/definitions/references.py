"""The files a flow references inside its folder, and the revision hash over them.

A flow's revision changes when its file changes or when a file it references beside it
changes: a python ``script``, the module of a ``function``/``handler``/check or run_if
function (``mod.py`` or ``mod/__init__.py``, dotted names as sub-folders), a ``.sql``
``script`` and the scripts a ``shell`` command names (``bash load.sh``,
``./steps/run.py``). Only paths inside the folder count; templates are not followed.
A module that appears beside the flow after a revision was stored (the flow's
``function: checks:ok`` found no ``checks.py`` then) is counted from then on
(:func:`added_references`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import msgspec

from ordo.definitions.files import FILE_LIMITS, Unreadable, escape_problem, read_regular
from ordo.errors import Problem
from ordo.model import Flow, Task, function_run_if
from ordo.templating import has_template

#: Extensions a shell command's words must have to count as scripts it references.
SCRIPT_EXTENSIONS = (".sh", ".bash", ".py", ".sql", ".pl", ".rb", ".js", ".r", ".ps1")
#: Files larger than this are hashed but their text is not stored with the revision.
MAX_STORED = 256 * 1024


def referenced_files(flow: Flow) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the files ``flow`` references inside
    its ``base_dir``: explicit scripts whether they exist or not (a missing one is part
    of the revision too), modules only when found there (else they are installed ones)."""
    folder = flow.base_dir
    if not folder:
        return []
    found: set[str] = set()
    seen: set[tuple[str, bool]] = set()  # many tasks name the same module: look once
    for task in flow.tasks:
        for ref in _task_refs(task):
            if ref in seen:
                continue
            seen.add(ref)
            path, must_exist = ref
            name = _inside(folder, path)
            if name is not None and (not must_exist or os.path.isfile(os.path.join(folder, name))):
                found.add(name)
    run_if = function_run_if(flow.run_if)
    for module in _modules([run_if.get("function")] if run_if else []):
        found.update(_module_files(folder, module))
    return sorted(found)


def added_references(flow: Flow, folder: str, known: Collection[str]) -> list[str]:
    """Files ``flow`` (a stored revision's) references in ``folder`` now that are not
    among ``known`` (the files that revision counted): a module created beside the flow
    after it was stored. Then the flow needs a new revision, though no counted file
    changed."""
    here = msgspec.structs.replace(flow, base_dir=folder)
    return sorted(set(referenced_files(here)) - set(known))


def _task_refs(task: Task) -> Iterable[tuple[str, bool]]:
    """(path, only if it exists) pairs a task references."""
    spec = task.spec
    script = spec.get("script")
    a_file = isinstance(script, str) and not has_template(script)
    if a_file and (task.type == "python" or (task.type == "sql" and _file_name(str(script)))):
        yield str(script), False
    functions = [spec.get("function"), spec.get("handler")]
    run_if = function_run_if(task.run_if)
    if run_if is not None:
        functions.append(run_if.get("function"))
    functions += [c.fields.get("function") for c in (*task.pre_checks, *task.post_checks)]
    for module in _modules(functions):
        for path in _module_paths(module):
            yield path, True
    if task.type == "shell":
        for word in _words(spec.get("command")):
            if word.lower().endswith(SCRIPT_EXTENSIONS):
                yield word, True


def _file_name(script: str) -> bool:
    """An sql ``script`` names a file unless it holds statements."""
    return "\n" not in script.strip() and ";" not in script


def _modules(functions: Iterable[Any]) -> list[str]:
    found = []
    for ref in functions:
        if isinstance(ref, str) and ":" in ref and not has_template(ref):
            found.append(ref.split(":", 1)[0].strip())
    return found


def _module_paths(module: str) -> list[str]:
    parts = [p for p in module.split(".") if p]
    if not parts:
        return []
    base = "/".join(parts)
    paths = [f"{base}.py", f"{base}/__init__.py"]
    paths += ["/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts))]
    return paths


def _module_files(folder: str, module: str) -> list[str]:
    return [p for p in _module_paths(module) if os.path.isfile(os.path.join(folder, p))]


def _words(command: Any) -> list[str]:
    if isinstance(command, list):
        return [w for w in command if isinstance(w, str) and not has_template(w)]
    if not isinstance(command, str) or has_template(command):
        return []
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def _inside(folder: str, path: str) -> str | None:
    """``path`` relative to ``folder`` when it lies inside it, else None."""
    full = os.path.normpath(os.path.join(folder, path))
    root = os.path.normpath(folder)
    if os.path.commonpath([full, root]) != root or full == root:
        return None
    return os.path.relpath(full, root).replace(os.sep, "/")


def revision_hash(
    data: bytes, folder: str | None, names: Sequence[str], limit: int = FILE_LIMITS.referenced
) -> str:
    """The content hash of a revision: the file's bytes and each referenced file's name
    and bytes (a missing one counts as missing). Without referenced files it is the
    sha256 of the file alone, as before they were counted."""
    if not names or folder is None:
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256(hashlib.sha256(data).digest())
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        content = _read(os.path.join(folder, name), limit)
        digest.update(b"-" if content is None else hashlib.sha256(content).digest())
    return digest.hexdigest()


def read_files(
    folder: str | None, names: Sequence[str], limit: int = FILE_LIMITS.referenced
) -> dict[str, str | None]:
    """The referenced files' text as stored with a revision: None for a missing file,
    one that is not UTF-8 text or one over :data:`MAX_STORED` bytes."""
    result: dict[str, str | None] = {}
    for name in sorted(names):
        content = _read(os.path.join(folder, name), limit) if folder else None
        text = None
        if content is not None and len(content) <= MAX_STORED:
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        result[name] = text
    return result


def reference_problems(
    folder: str, names: Sequence[str], root: str | None = None, limit: int = FILE_LIMITS.referenced
) -> list[Problem]:
    """What is wrong with the referenced files ``names`` in ``folder``: a symbolic link
    whose target is outside ``root`` (default: ``folder``), something other than a
    regular file, a file over ``limit`` bytes. A missing file is not a problem."""
    problems = []
    for name in sorted(names):
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            continue
        escape = escape_problem(root or folder, path, path)
        if escape is not None:
            problems.append(escape)
            continue
        if not os.path.exists(path):
            continue  # a dangling link inside the folder: missing
        try:
            read_regular(path, limit)
        except Unreadable as exc:
            problems.append(Problem(f"referenced file not read: {exc.reason}", path))
    return problems


def _read(path: str, limit: int) -> bytes | None:
    """A regular file's bytes (at most ``limit`` of them), else None."""
    try:
        return read_regular(path, limit)
    except Unreadable:
        return None
