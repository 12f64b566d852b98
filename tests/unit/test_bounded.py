"""Bounded parsing: YAML 1.2 values and positions as ruamel gave them, anchors and merge
keys, and every limit refused with its place."""

from __future__ import annotations

import datetime

import pytest

from ordo.definitions.bounded import Limits, load_json, load_yaml
from ordo.errors import DefinitionError


def refused(load: object, text: str) -> str:
    with pytest.raises(DefinitionError) as caught:
        load(text, "f.yaml")  # type: ignore[operator]
    (problem,) = caught.value.problems
    return str(problem)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("on", "on"),
        ("True", True),
        ("false", False),
        ("~", None),
        ("", None),
        ("012", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("-5", -5),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-.inf", float("-inf")),
        ("2026-01-02", datetime.date(2026, 1, 2)),
        ("1:30", "1:30"),
        ("'5'", "5"),
        ("!!str 5", "5"),
        ("!!int '7'", 7),
        ("!custom 3", "3"),
        ("'<<'", "<<"),
    ],
)
def test_scalars_read_as_yaml_1_2(text: str, value: object) -> None:
    assert load_yaml(f"a: {text}\n", "f.yaml") == {"a": value}


def test_anchors_aliases_and_merge_keys() -> None:
    doc = load_yaml(
        "base: &b {x: 1, y: 2}\nother: &o {z: 3}\nc:\n  <<: [*b, *o]\n  y: 9\nl: [*b]\n",
        "f.yaml",
    )
    assert doc["c"] == {"y": 9, "x": 1, "z": 3}
    assert doc["l"] == [{"x": 1, "y": 2}]


def test_positions_are_those_of_keys_values_and_items() -> None:
    doc = load_yaml("a:\n  - x: 1\n    y: [1, 2]\n", "f.yaml")
    assert doc.lc.key("a") == (0, 0)
    assert doc.lc.value("a") == (1, 2)
    assert doc["a"].lc.item(0) == (1, 4)
    assert doc["a"][0].lc.value("y") == (2, 7)
    assert doc["a"][0]["y"].lc.item(1) == (2, 11)


def bomb(levels: int) -> str:
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_limits_are_refused_with_their_place() -> None:
    assert refused(load_yaml, "a: " + "[" * 150 + "]" * 150) == (
        "f.yaml:1:103: nested deeper than 100 levels"
    )
    assert refused(load_yaml, bomb(9)).startswith("f.yaml:4:")
    assert "alias bomb" in refused(load_yaml, bomb(9))
    assert refused(load_yaml, "a: &a [*a]\n") == (
        "f.yaml:1:8: alias *a is inside the node it names"
    )
    assert refused(load_yaml, "d: &d {<<: *d}\n") == (
        "f.yaml:1:12: alias *d is inside the node it names"
    )
    assert refused(load_yaml, "a: *nowhere\n") == (
        "f.yaml:1:4: alias *nowhere names no anchor before it"
    )
    assert refused(load_yaml, "a:\n  b: " + "9" * 4301 + "\n") == (
        "f.yaml:2:6: a number longer than 4300 digits"
    )
    assert refused(load_yaml, "? [1]\n: 2\n") == (
        "f.yaml:1:3: a mapping key must be a scalar, not a mapping or list"
    )
    assert "too large" in refused(lambda t, p: load_yaml(t, p, Limits(size=10)), "a: 12345678901")


def test_a_few_aliases_are_fine() -> None:
    assert len(load_yaml(bomb(3), "f.yaml")["x2"]) == 10


def test_json_limits_are_refused_with_their_place() -> None:
    assert refused(load_json, '{"a":\n ' + "[" * 5000 + "]" * 5000 + "}") == (
        "f.yaml:2:101: nested deeper than 100 levels"
    )
    assert refused(load_json, '{"a": ' + "[" * 101 + "]" * 101 + "}") == (
        "f.yaml:1:106: nested deeper than 100 levels"
    )
    assert refused(load_json, '{"n":\n  ' + "1" * 4301 + "}") == (
        "f.yaml:2:3: a number longer than 4300 digits"
    )
    assert refused(load_json, '{"a": 1,}').startswith("f.yaml:1:9: invalid JSON")
    assert load_json(b'{"a": [1, {"b": null}]}', "f.json") == {"a": [1, {"b": None}]}
