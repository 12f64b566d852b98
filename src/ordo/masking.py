"""Values never shown: secrets (``ordo secrets``), a connection's credentials and the
values of a task's environment variables named like a secret are replaced by ``****``
in log lines, errors, outputs (keys too), metrics and check results before anything is
stored. Pure.

A value is looked for as it is and in the encodings a task is likely to print it in
(:func:`forms`), and in log lines also when it is split across lines
(:class:`LineMask`).
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

import msgspec

from ordo.model import Outcome

MASK = "****"

#: Values shorter than this are masked as they are and JSON- or repr-escaped only: their
#: URL or base64 encodings would be too short to mask without hiding unrelated text.
MIN_ENCODED = 4


def forms(values: Iterable[str]) -> tuple[str, ...]:
    """The texts to mask for ``values``, longest first: each value as it is, JSON-escaped
    (``json.dumps(v)[1:-1]``, with and without ``\\u`` escapes), repr-escaped
    (``repr(v)[1:-1]``), and, for values of :data:`MIN_ENCODED` characters or more,
    URL-quoted (``quote`` and ``quote_plus``) and base64 (standard and URL-safe alphabet,
    without the ``=`` padding, so a padded one is masked too). Empty values are left
    out."""
    found = {v for v in values if v}
    return _forms(tuple(sorted(found))) if found else ()


@lru_cache(maxsize=64)
def _forms(values: tuple[str, ...]) -> tuple[str, ...]:
    import base64
    from urllib.parse import quote, quote_plus  # (and ipaddress): when there are secrets

    found: set[str] = set()
    for value in values:
        found.update((value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]))
        found.add(repr(value)[1:-1])
        if len(value) >= MIN_ENCODED:
            raw = value.encode("utf-8")
            found.update((quote(value, safe=""), quote_plus(value, safe="")))
            found.add(base64.b64encode(raw).decode().rstrip("="))
            found.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    found.discard("")
    return tuple(sorted(found, key=lambda f: (-len(f), f)))


@lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(set(secrets), key=lambda s: (-len(s), s))  # longest wins at a place
    return re.compile("|".join(re.escape(s) for s in ordered))


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each of ``secrets`` replaced by :data:`MASK`."""
    if not secrets or not text:
        return text
    return _pattern(secrets).sub(MASK, text)


def mask_value(value: Any, secrets: tuple[str, ...]) -> Any:
    """Every string inside ``value`` (nested dicts and lists too, keys included),
    masked; a number or boolean whose JSON text holds a secret becomes that text,
    masked."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {mask(str(k), secrets): mask_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, secrets) for v in value]
    if isinstance(value, int | float | bool):
        text = json.dumps(value)
        shown = mask(text, secrets)
        return value if shown == text else shown
    return value


def masked(outcome: Outcome, secrets: tuple[str, ...]) -> Outcome:
    """The outcome with ``secrets`` masked in its error, outputs (keys and values),
    metrics (names and tags), for_each items and check results."""
    if not secrets:
        return outcome
    return msgspec.structs.replace(
        outcome,
        error=mask(outcome.error, secrets) if outcome.error else outcome.error,
        outputs=mask_value(dict(outcome.outputs), secrets),
        metrics=tuple(
            msgspec.structs.replace(
                m,
                name=mask(m.name, secrets),
                tags={mask(k, secrets): mask(v, secrets) for k, v in m.tags.items()},
            )
            for m in outcome.metrics
        ),
        forks=None if outcome.forks is None else tuple(mask_value(list(outcome.forks), secrets)),
        checks=tuple(
            msgspec.structs.replace(
                c,
                message=mask(c.message, secrets),
                output=mask(c.output, secrets) if c.output else c.output,
            )
            for c in outcome.checks
        ),
    )


#: Parts of variable names whose values are secrets (any case), the default of the
#: ``secrets.mask_names`` setting.
SECRET_NAME_PARTS = ("password", "passwd", "secret", "key", "token", "credential")


def secret_name_pattern(parts: Iterable[str]) -> re.Pattern[str]:
    """A pattern finding any of ``parts`` (any case) in a variable's name."""
    kept = sorted({p.strip() for p in parts if p.strip()})
    if not kept:
        return re.compile(r"(?!)")  # matches no name
    return re.compile("|".join(re.escape(p) for p in kept), re.IGNORECASE)


#: Variable names whose values are secrets: masked in logs, outputs and errors.
SECRET_NAME = secret_name_pattern(SECRET_NAME_PARTS)

#: Variables of ordo's own process that no task, template or python host ever sees.
WITHHELD = frozenset({"ORDO_SECRET_KEY", "ORDO_SESSION_KEY"})


def passed_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the :data:`WITHHELD` variables: what tasks may inherit."""
    return {k: v for k, v in environ.items() if k not in WITHHELD}


def secret_values(
    env: Mapping[str, str], pattern: re.Pattern[str] = SECRET_NAME
) -> tuple[str, ...]:
    """The values of the variables in ``env`` named like a secret (``pattern``:
    password, secret, key, token, credential by default), longest first; values under 4
    characters are left alone (masking ``1`` everywhere would hide more than it
    protects)."""
    if not env:
        return ()
    found = {v for k, v in env.items() if pattern.search(k) and len(v) >= 4}
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


class MaskingFilter(logging.Filter):
    """A logging filter masking, in every record's message and traceback, the values
    ``secrets()`` gives at that moment (the process's decrypted secrets and its
    environment's secret-named values), in the forms of :func:`forms`."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        hidden = forms(self._secrets())
        if not hidden:
            return True
        message = record.getMessage()
        shown = mask(message, hidden)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, hidden)
        return True


class LineMask:
    """Masks one stream of log lines, also where a secret is split across lines (a
    value with newlines, or printed in pieces): the lines are matched joined by their
    line breaks, and joined without them against the secrets without theirs. A line
    whose end could be the start of a secret is held back until the next line shows
    whether it is (or :meth:`flush`)."""

    #: held lines past this many characters are let go, masked as far as known
    MAX_HELD = 1 << 20

    def __init__(self, secrets: tuple[str, ...]) -> None:
        kept = tuple(s for s in secrets if s)
        flat = tuple(dict.fromkeys(f for s in kept if (f := s.replace("\n", ""))))
        self._ways = [(sep, found) for sep, found in (("\n", kept), ("", flat)) if found]
        self._pattern = {sep: _pattern(found) for sep, found in self._ways}
        self._by_first: dict[str, dict[str, list[str]]] = {}
        for sep, found in self._ways:
            for f in found:
                self._by_first.setdefault(sep, {}).setdefault(f[0], []).append(f)
        self._longest = max((len(s) for s in kept), default=0)
        self._lines: list[str] = []
        self._covered: list[bytearray] = []

    @property
    def holding(self) -> bool:
        return bool(self._lines)

    def feed(self, line: str) -> list[str]:
        """The lines (masked) that can be shown now, ``line`` perhaps among them."""
        if not self._ways:
            return [line]
        self._lines.append(line)
        self._covered.append(bytearray(len(line)))
        self._cover()
        keep = self._held_from()
        if keep is None or sum(map(len, self._lines)) > self.MAX_HELD:
            keep = len(self._lines)
        return self._release(keep)

    def flush(self) -> list[str]:
        """Every held line, masked as far as known."""
        return self._release(len(self._lines))

    def _release(self, count: int) -> list[str]:
        shown = [_render(t, c) for t, c in zip(self._lines[:count], self._covered, strict=False)]
        del self._lines[:count]
        del self._covered[:count]
        return shown

    def _cover(self) -> None:
        """Mark the characters of every secret found in the held lines."""
        for sep, _ in self._ways:
            text = sep.join(self._lines)
            starts = _starts(self._lines, len(sep))
            for m in self._pattern[sep].finditer(text):
                for pos in range(m.start(), m.end()):
                    i = bisect.bisect_right(starts, pos) - 1
                    col = pos - starts[i]
                    if col < len(self._lines[i]):
                        self._covered[i][col] = 1

    def _held_from(self) -> int | None:
        """The index of the first held line that a secret may go on from, if any."""
        best: int | None = None
        for sep, _ in self._ways:
            text = sep.join(self._lines) + sep
            starts = _starts(self._lines, len(sep))
            begin = max(0, len(text) - self._longest + 1)
            for first, candidates in self._by_first[sep].items():
                j = text.find(first, begin)
                while j != -1:
                    rest = text[j:]
                    if any(len(s) > len(rest) and s.startswith(rest) for s in candidates):
                        i = max(bisect.bisect_right(starts, j) - 1, 0)
                        best = i if best is None else min(best, i)
                        break
                    j = text.find(first, j + 1)
        return best


def _starts(lines: list[str], sep: int) -> list[int]:
    starts, at = [], 0
    for line in lines:
        starts.append(at)
        at += len(line) + sep
    return starts


def _render(text: str, covered: bytearray) -> str:
    """``text`` with each run of covered characters replaced by one :data:`MASK`."""
    if not any(covered):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            j = i
            while j < len(text) and not covered[j]:
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)
