"""Loaders that turn definitions into validated flows."""

from ordo.definitions.flowfile import (
    coerce_inputs,
    content_hash,
    convert_input,
    load_flow_file,
    parse_flow,
)

__all__ = ["coerce_inputs", "content_hash", "convert_input", "load_flow_file", "parse_flow"]
