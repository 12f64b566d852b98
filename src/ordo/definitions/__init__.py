"""Loaders that turn definitions into validated flows."""

from ordo.definitions.flowfile import content_hash, load_flow_file, parse_flow
from ordo.definitions.inputs import coerce_inputs, convert_input

__all__ = ["coerce_inputs", "content_hash", "convert_input", "load_flow_file", "parse_flow"]
