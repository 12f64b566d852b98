"""Loaders that turn definitions into validated flows: flow files and package folders.

Each name loads its module when first used (PEP 562): reusing a stored revision (its
file unchanged) imports neither the YAML parser nor the checkers.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ordo.model import Flow

if TYPE_CHECKING:
    from ordo.definitions.discovery import Found, discover
    from ordo.definitions.files import is_package
    from ordo.definitions.flowfile import content_hash, load_flow_file, parse_flow
    from ordo.definitions.inputs import coerce_inputs, convert_input
    from ordo.definitions.package import load_package, package_files, package_hash
    from ordo.definitions.prepared import Prepared, current_hash, prepare
    from ordo.definitions.references import (
        added_references,
        read_files,
        referenced_files,
        revision_hash,
    )
    from ordo.definitions.runoptions import notify_rule, read_run_options

#: Where each name lives.
_MODULES = {
    "Found": "discovery",
    "discover": "discovery",
    "content_hash": "flowfile",
    "load_flow_file": "flowfile",
    "parse_flow": "flowfile",
    "coerce_inputs": "inputs",
    "convert_input": "inputs",
    "is_package": "files",
    "load_package": "package",
    "package_files": "package",
    "package_hash": "package",
    "Prepared": "prepared",
    "current_hash": "prepared",
    "prepare": "prepared",
    "added_references": "references",
    "read_files": "references",
    "referenced_files": "references",
    "revision_hash": "references",
    "notify_rule": "runoptions",
    "read_run_options": "runoptions",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'ordo.definitions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ordo.definitions.{module}"), name)
    globals()[name] = value
    return value


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
    from ordo.definitions.files import is_package, is_python
    from ordo.definitions.flowfile import load_flow_file
    from ordo.definitions.package import load_package
    from ordo.definitions.prepared import prepare

    if is_python(path):
        return prepare(path).flow
    return load_package(path) if is_package(path) else load_flow_file(path)
