"""Loaders that turn definitions into validated flows: flow files and package folders."""

from __future__ import annotations

import os

from ordo.definitions import pyflows
from ordo.definitions.discovery import Found, discover
from ordo.definitions.flowfile import content_hash, load_flow_file, parse_flow
from ordo.definitions.inputs import coerce_inputs, convert_input
from ordo.definitions.package import is_package, load_package, package_files, package_hash
from ordo.definitions.prepared import Prepared, current_hash, prepare
from ordo.definitions.references import (
    added_references,
    read_files,
    referenced_files,
    revision_hash,
)
from ordo.definitions.runoptions import notify_rule, read_run_options
from ordo.model import Flow

__all__ = [
    "Found",
    "Prepared",
    "added_references",
    "coerce_inputs",
    "content_hash",
    "convert_input",
    "current_hash",
    "discover",
    "is_package",
    "load",
    "load_flow_file",
    "load_package",
    "notify_rule",
    "package_files",
    "package_hash",
    "parse_flow",
    "prepare",
    "read_files",
    "read_run_options",
    "referenced_files",
    "revision_hash",
]


def load(path: str | os.PathLike[str]) -> Flow:
    """A flow file, or a package folder, validated."""
    if pyflows.is_python(path):
        return prepare(path).flow
    return load_package(path) if is_package(path) else load_flow_file(path)
