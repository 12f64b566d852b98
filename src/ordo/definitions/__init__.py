"""Loaders that turn definitions into validated flows: flow files and package folders."""

from __future__ import annotations

import os

from ordo.definitions.flowfile import content_hash, load_flow_file, parse_flow
from ordo.definitions.inputs import coerce_inputs, convert_input
from ordo.definitions.package import is_package, load_package, package_hash
from ordo.model import Flow

__all__ = [
    "coerce_inputs",
    "content_hash",
    "convert_input",
    "is_package",
    "load",
    "load_flow_file",
    "load_package",
    "package_hash",
    "parse_flow",
]


def load(path: str | os.PathLike[str]) -> Flow:
    """A flow file, or a package folder, validated."""
    return load_package(path) if is_package(path) else load_flow_file(path)
