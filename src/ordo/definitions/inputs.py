"""Execution inputs: values from the command line or an API converted to their types."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ordo.definitions.schema import describe, is_number
from ordo.errors import DefinitionError, Problem
from ordo.model import Flow

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def convert_input(kind: str, value: Any) -> Any:
    """``value`` as the declared input type; strings (from ``-i k=v``) are parsed."""
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
    elif kind == "float":
        if is_number(value):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
    elif kind == "json":
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"expected JSON, found {value!r} ({exc})") from None
    article = "an" if kind == "int" else "a"
    raise ValueError(f"expected {article} {kind}, found {describe(value)}")


def coerce_inputs(flow: Flow, given: Mapping[str, Any]) -> dict[str, Any]:
    """The execution's inputs: ``given`` converted to the declared types, defaults filled
    in; unknown or missing required inputs are errors naming ``inputs.<name>``."""
    problems: list[Problem] = []
    declared = {spec.name: spec for spec in flow.inputs}
    for name in given:
        if name not in declared:
            import difflib  # only when something is misspelt

            hint = difflib.get_close_matches(name, list(declared), n=1)
            tip = f" (did you mean '{hint[0]}'?)" if hint else ""
            known = ", ".join(declared) or "none"
            problems.append(
                Problem(
                    f"unknown input '{name}'{tip}; declared inputs: {known}",
                    flow.path,
                    field=f"inputs.{name}",
                )
            )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name not in given:
            if spec.required and spec.default is None:
                problems.append(
                    Problem(
                        f"input '{name}' is required ({spec.type})",
                        flow.path,
                        field=f"inputs.{name}",
                    )
                )
            values[name] = spec.default
            continue
        try:
            values[name] = convert_input(spec.type, given[name])
        except ValueError as exc:
            problems.append(Problem(str(exc), flow.path, field=f"inputs.{name}"))
    if problems:
        raise DefinitionError(problems)
    return values
