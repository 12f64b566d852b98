"""A flow file or package folder read, validated and hashed, ready to be stored as a
revision: its flow, the text it came from, the content hash (over the files it
references too, see :mod:`ordo.definitions.references`) and those files' text."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import msgspec
from msgspec import Struct

from ordo.definitions.files import (
    FILE_LIMITS,
    FileLimits,
    is_package,
    is_python,
    read_definition,
    split,
)
from ordo.definitions.references import (
    read_files,
    reference_problems,
    referenced_files,
    revision_hash,
)
from ordo.errors import DefinitionError, Problem
from ordo.model import Flow

# Reusing a stored revision needs only current_hash: the parsers (flowfile, package,
# pyflows) are imported when a flow is really read.


class Prepared(Struct, frozen=True):
    """A flow read and validated, with its source, content hash and referenced files."""

    flow: Flow
    source: str
    content_hash: str
    scripts: dict[str, str | None]


def prepare(
    path: str | os.PathLike[str], limits: FileLimits = FILE_LIMITS, root: str | None = None
) -> Prepared:
    """Read and validate a flow file or package folder; DefinitionError names every
    problem (an unreadable file is one too). Only regular files within ``limits`` are
    read, and the files it references must really be inside ``root`` (default: the
    flow's folder), symbolic links resolved."""
    from ordo.definitions.flowfile import parse_flow
    from ordo.definitions.package import load_package, package_files, package_hash

    absolute = os.path.abspath(path)
    if is_python(absolute):
        return _prepare_python(absolute, str(path), limits, root)
    if is_package(absolute):
        flow = load_package(absolute, limits)
        names = package_files(absolute)
        _check_references(absolute, names, root, limits)
        source = json.dumps({"package": absolute, "scripts": [t.id for t in flow.tasks]})
        scripts = read_files(absolute, names, limits.referenced)
        return Prepared(flow, source, package_hash(absolute, limits.referenced), scripts)
    data = read_bytes(absolute, str(path), limits.flow)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(f"file is not UTF-8 text (byte {exc.start})", str(path))
        raise DefinitionError([problem]) from exc
    flow = parse_flow(text, absolute)
    names = referenced_files(flow)
    if flow.base_dir:
        _check_references(flow.base_dir, names, root, limits)
    digest = revision_hash(data, flow.base_dir, names, limits.referenced)
    return Prepared(flow, text, digest, read_files(flow.base_dir, names, limits.referenced))


def current_hash(path: str, names: Sequence[str]) -> str:
    """The content hash ``path`` has now, counting the referenced files ``names`` (what
    its stored revision referenced): equal to that revision's when nothing changed."""
    if is_package(path):
        from ordo.definitions.package import package_hash

        return package_hash(path)
    file = split(path)[0]
    return revision_hash(read_bytes(file, file), os.path.dirname(file), names)


def _prepare_python(absolute: str, shown: str, limits: FileLimits, root: str | None) -> Prepared:
    """A ``@flow`` of a Python file (``file.py`` or ``file.py:function``): read without
    running it, then imported once in another process to report an import error."""
    from ordo.definitions import pyflows

    file, name = split(absolute)
    data = read_bytes(file, split(shown)[0], limits.flow)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(f"file is not UTF-8 text (byte {exc.start})", shown)
        raise DefinitionError([problem]) from exc
    found = pyflows.read(file, text)
    flow = pyflows.choose(file, found, name)
    if len(found) > 1:  # each flow of the file is tracked at its own path
        flow = msgspec.structs.replace(flow, path=f"{file}:{flow.tasks[0].id}")
    pyflows.check_import(file)
    names = sorted({*referenced_files(flow), *pyflows.local_imports(file, text)})
    _check_references(flow.base_dir, names, root, limits)
    digest = revision_hash(data, flow.base_dir, names, limits.referenced)
    return Prepared(flow, text, digest, read_files(flow.base_dir, names, limits.referenced))


def _check_references(
    folder: str, names: Sequence[str], root: str | None, limits: FileLimits
) -> None:
    problems = reference_problems(folder, names, root, limits.referenced)
    if problems:
        raise DefinitionError(problems)


def read_bytes(absolute: str, shown: str, limit: int = FILE_LIMITS.flow) -> bytes:
    """A flow file's bytes: a regular file of at most ``limit`` bytes."""
    return read_definition(absolute, shown, limit)
