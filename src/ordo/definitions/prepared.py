"""A flow file or package folder read, validated and hashed, ready to be stored as a
revision: its flow, the text it came from, the content hash (over the files it
references too, see :mod:`ordo.definitions.references`) and those files' text."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ordo.definitions.files import FILE_LIMITS, FileLimits, read_definition
from ordo.definitions.flowfile import parse_flow
from ordo.definitions.package import is_package, load_package, package_files, package_hash
from ordo.definitions.references import (
    read_files,
    reference_problems,
    referenced_files,
    revision_hash,
)
from ordo.errors import DefinitionError, Problem
from ordo.model import Flow


@dataclass(frozen=True)
class Prepared:
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
    absolute = os.path.abspath(path)
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
        return package_hash(path)
    return revision_hash(read_bytes(path, path), os.path.dirname(path), names)


def _check_references(
    folder: str, names: Sequence[str], root: str | None, limits: FileLimits
) -> None:
    problems = reference_problems(folder, names, root, limits.referenced)
    if problems:
        raise DefinitionError(problems)


def read_bytes(absolute: str, shown: str, limit: int = FILE_LIMITS.flow) -> bytes:
    """A flow file's bytes: a regular file of at most ``limit`` bytes."""
    return read_definition(absolute, shown, limit)
