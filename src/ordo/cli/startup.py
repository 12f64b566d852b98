"""What the ``ordo`` command does before anything else it imports: msgspec, which every
command loads, looks for ``typing_extensions`` when it is first imported and uses
``typing``'s own functions when that is not there. On the Pythons ordo runs on,
``typing`` has all that ordo's types need, and ``typing_extensions`` cost a command
about 10 ms to import (a tenth of ``ordo run`` of a one-task flow): it is hidden from
msgspec's first import only, and stays importable for everything after it."""

from __future__ import annotations

import sys

if "msgspec" not in sys.modules and "typing_extensions" not in sys.modules:
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]
    try:
        import msgspec  # noqa: F401
    finally:
        del sys.modules["typing_extensions"]
