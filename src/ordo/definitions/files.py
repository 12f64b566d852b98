"""Reading the files of a definition the way a deploy may: only regular files (never a
FIFO, a device or a socket, which could block or never end), at most a size limit, and,
for the files a flow references, only those whose real path (symbolic links resolved)
stays inside the flow's folder."""

from __future__ import annotations

import os
import stat

from msgspec import Struct

from ordo.errors import DefinitionError, Problem

MIB = 1024 * 1024


class FileLimits(Struct, frozen=True):
    """Largest sizes read, in bytes: a file a flow references (a script, a module, a
    package's file) and a flow file (or a package's ``flow.yaml``)."""

    referenced: int = MIB
    flow: int = 8 * MIB


FILE_LIMITS = FileLimits()


class Unreadable(Exception):
    """Why a file is not read: ``reason`` (a sentence without the file's name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_regular(path: str, limit: int, *, streams: bool = False) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed), at most
    ``limit`` of them; :class:`Unreadable` for anything else. Opening does not block on a
    FIFO (``O_NONBLOCK``) and the type is checked on the open file, so a file swapped
    after a check is not read either. ``streams``: a FIFO or character device named on
    purpose (``ordo validate /dev/stdin``) is read too, still at most ``limit`` bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | (0 if streams else os.O_NONBLOCK)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise Unreadable(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        stream = stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)
        if not stat.S_ISREG(info.st_mode) and not (streams and stream):
            raise Unreadable(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise Unreadable(f"{info.st_size} bytes, over the limit of {limit}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(f"over the limit of {limit} bytes")
    return data


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a file"


def outside(root: str, path: str) -> str | None:
    """Where ``path`` really leads when that is outside ``root`` (both resolved with
    :func:`os.path.realpath`), else None."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root or os.path.commonpath([real, real_root]) != real_root:
        return real
    return None


def escape_problem(root: str, path: str, shown: str) -> Problem | None:
    """A problem when ``path`` resolves outside ``root``, naming the link and its target."""
    target = outside(root, path)
    if target is None:
        return None
    return Problem(
        f"a symbolic link to {target}, outside the folder {os.path.realpath(root)}: not read",
        shown,
    )


def read_definition(path: str, shown: str, limit: int, *, streams: bool = False) -> bytes:
    """A flow file's bytes, or DefinitionError naming why it cannot be read."""
    try:
        return read_regular(path, limit, streams=streams)
    except Unreadable as exc:
        raise DefinitionError([Problem(f"cannot read flow file: {exc.reason}", shown)]) from None


def is_python(path: str | os.PathLike[str]) -> bool:
    """A Python flow file: ``file.py`` or ``file.py:function``."""
    return split(os.fspath(path))[0].endswith(".py")


def split(path: str) -> tuple[str, str | None]:
    """``file.py:function`` -> (``file.py``, ``function``); a plain path -> (path, None)."""
    head, sep, name = path.rpartition(":")
    if sep and head.endswith(".py") and name.isidentifier():
        return head, name
    return path, None


def is_package(path: str | os.PathLike[str]) -> bool:
    """A package folder (a flow of its scripts), not a flow file."""
    return os.path.isdir(path)
