"""The whole exception tree of ordo.

Outcomes of tasks are data, not exceptions: these are for bad definitions, bad
configuration, broken infrastructure and programming errors. Edges map them to exit
codes (``exit_code``, with :data:`EXIT_OK`, :data:`EXIT_FAILED`, :data:`EXIT_USAGE`) and,
later, HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct


class OrdoError(Exception):
    """Root of every error ordo raises on purpose."""

    exit_code = 2


class ConfigError(OrdoError):
    """Bad settings: an unknown database URL scheme, an unusable ORDO_HOME, ..."""


class Problem(Struct, frozen=True):
    """One thing wrong with a definition, located as precisely as known."""

    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.path or "<flow>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        prefix = f"{where}: "
        if self.field:
            prefix += f"{self.field}: "
        return prefix + self.message


class DefinitionError(OrdoError):
    """A flow definition is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StoreError(OrdoError):
    """The store cannot do what was asked (unreachable, corrupt, ...)."""

    exit_code = 1


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (a server restart, a network fault)."""


class NotFound(StoreError):
    """An execution, task run, attempt or flow that does not exist."""

    exit_code = 2


class Conflict(StoreError):
    """A conditional update lost its race or a transition is not allowed: asked of an
    execution in a state that does not allow it, a usage error (exit 2)."""

    exit_code = 2


class LeaseLost(StoreError):
    """A worker reported on an attempt whose lease it no longer holds."""


class IllegalTransition(Conflict):
    """A state change that the transition table does not allow."""


class RunnerError(OrdoError):
    """A runner could not even start (broken installation, not a task failure)."""

    exit_code = 1


class UsageError(OrdoError):
    """The command line was used wrongly (bad -i value, unknown option value)."""


class Forbidden(OrdoError):
    """Not allowed here: a manual start of a flow with ``allow_manual: false``, a change
    asked with a read-only API token."""


class TooLarge(UsageError):
    """An upload over its limit (``server.max_upload``): 413 naming the limit."""


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``choices`` is close to ``word``, else
    ``""``: the hint every "unknown name" message ends with."""
    import difflib

    hint = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def http_status(exc: OrdoError) -> int:
    """The one mapping of errors to HTTP status codes."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, DefinitionError | UsageError):
        return 422
    if isinstance(exc, StoreUnavailable):
        return 503
    return 500
