"""Leaving a process once its work is done, without the interpreter's teardown
(standard library only: the python hosts import it too)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def leave(code: int, flush: Callable[[], object] | None = None) -> None:
    """Exit with ``code`` at once when nothing else needs the process: tearing the
    interpreter down, every object of every module freed one by one, costs a process
    that imported much 5-15 ms. What an exit must still do is done first: standard output
    and error flushed, the ``atexit`` functions run (logging's shutdown, temporary folders
    removed, a task's own). Returns instead, for the usual exit, while a thread other than
    a daemon still runs (the usual exit waits for it) or when a stream cannot be flushed
    (the usual exit says why). ``flush``: more to flush last (a host's C buffers)."""
    import threading

    main = threading.main_thread()
    if any(not t.daemon for t in threading.enumerate() if t is not main):
        return
    if not _flushed():
        return
    import atexit

    atexit._run_exitfuncs()  # (then forgotten: the usual exit would not run them again)
    if flush is not None:
        flush()
    if _flushed():
        os._exit(code)


def _flushed() -> bool:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # a closed pipe or stream
        return False
    return True
