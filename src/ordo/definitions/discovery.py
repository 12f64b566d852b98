"""Finding the definitions in a folder that ``ordo deploy`` stores.

Every ``*.yaml``, ``*.yml`` and ``*.json`` file in the folder or its sub-folders whose
top level is a mapping with ``tasks`` is a flow file (one that does not parse is one too:
its errors are reported); a sub-folder holding a ``flow.yaml`` (or ``flow.yml``) without
``tasks`` is a package, and what is inside it is its own. Names starting with ``.`` or
``_`` are skipped, and so are ``config.json`` files and other YAML and JSON files. A
``*.py`` file with ``@flow`` functions is a flow file too (``file.py:function`` for each
of several); other Python files are the modules flows import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from msgspec import Struct, field

from ordo.definitions import pyflows
from ordo.definitions.document import load_document
from ordo.definitions.files import FILE_LIMITS, Unreadable, outside, read_regular
from ordo.definitions.package import CONFIG_FILE, META_FILES
from ordo.errors import DefinitionError

EXTENSIONS = (".yaml", ".yml", ".json")


class Found(Struct):
    """Absolute paths: flow files and package folders, and the YAML/JSON files that
    are not flows (ignored)."""

    definitions: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def discover(folder: str, limit: int = FILE_LIMITS.flow) -> Found:
    """The flow files and package folders in ``folder`` (absolute), in name order. A
    YAML or JSON file that cannot be read (a symbolic link out of the folder, not a
    regular file, over ``limit`` bytes) counts as a flow file: deploying it reports why."""
    found = Found()
    root = os.path.abspath(folder)
    if _is_package(root, root, limit):
        found.definitions.append(root)
        return found
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for d in list(dirs):
            if _is_package(os.path.join(current, d), root, limit):
                found.definitions.append(os.path.join(current, d))
                dirs.remove(d)
        for name in sorted(files):
            if name.startswith((".", "_")) or name == CONFIG_FILE:
                continue
            if name.lower().endswith(EXTENSIONS):
                path = os.path.join(current, name)
                flow = _is_flow_file(path, root, limit)
                (found.definitions if flow else found.ignored).append(path)
            elif name.endswith(".py"):
                found.definitions.extend(_python_flows(os.path.join(current, name), root, limit))
    found.definitions.sort()
    return found


def _python_flows(path: str, root: str, limit: int) -> list[str]:
    """A Python file's flows: ``path`` when it has one ``@flow`` (or cannot be parsed
    but mentions one: deploying it reports why), ``path:function`` for each of several;
    none for other Python files (modules the flows import)."""
    if outside(root, path) is not None:
        return []
    try:
        text = read_regular(path, limit).decode("utf-8")
    except (Unreadable, UnicodeDecodeError):
        return []
    if "flow" not in text:
        return []
    names = pyflows.flow_functions(text)
    if names is None:
        return [path] if "@flow" in text or "ordo.flow" in text else []
    if len(names) == 1:
        return [path]
    return [f"{path}:{n}" for n in names]


def _is_package(folder: str, root: str, limit: int) -> bool:
    for name in META_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return not _is_flow_file(path, root, limit)
    return False


def _is_flow_file(path: str, root: str, limit: int) -> bool:
    """A mapping with ``tasks``, or a file that does not parse (reported as invalid)."""
    if outside(root, path) is not None:
        return True
    try:
        text = read_regular(path, limit).decode("utf-8")
    except (Unreadable, UnicodeDecodeError):
        return True
    fmt = "json" if path.lower().endswith(".json") else "yaml"
    try:
        root = load_document(text.removeprefix("\ufeff"), path, fmt)
    except DefinitionError:
        return True
    return isinstance(root, Mapping) and "tasks" in root
