"""``ordo.store.db.columns``: the store's hot paths read a row's columns by position,
the same from both backends' rows (``sqlite3.Row``, and the PostgreSQL batches' rows)."""

from __future__ import annotations

import sqlite3

from ordo.store.db import columns
from ordo.store.postgres import _row_class


def test_columns_are_read_by_name_in_the_order_asked_from_either_kind_of_row() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    lite = conn.execute("SELECT 1 AS a, 'x' AS b, NULL AS c").fetchall()
    lite += conn.execute("SELECT NULL AS c, 2 AS a, 'y' AS b").fetchall()  # (another order)
    named = _row_class((b"c", b"b", b"a"))
    pg = [named((None, "z", 3))]
    assert columns([*lite, *pg], ("b", "a")) == [("x", 1), ("y", 2), ("z", 3)]
    assert columns(pg, ("a",)) == [(3,)]
    assert columns([], ("a",)) == []
