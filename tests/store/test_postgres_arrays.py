"""Arrays passed to PostgreSQL in their text form (``ordo.store.postgres.array``) read
back as the values they were made of."""

from __future__ import annotations

import psycopg

from ordo.store.postgres import array


def test_arrays_in_text_form_read_back_as_their_values(postgres_url: str) -> None:
    texts = ['a"b\\c', None, "NULL", "", " x ", "{,}", "é ☃", "line\nbreak"]
    numbers = [1, None, 2**62, -7, True, 12.0, 12.7]
    floats = [1e300, float("inf"), None, 2, 0.1, -0.0]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT CAST(%s AS TEXT[]), CAST(%s AS BIGINT[]), CAST(%s AS DOUBLE PRECISION[]),"
            " CAST(%s AS BIGINT[]), CAST(%s AS INTEGER[]), CAST(%s AS BIGINT[]),"
            " CAST(%s AS DOUBLE PRECISION[])",
            (
                array(texts, "TEXT"),
                array(numbers, "BIGINT"),
                array(floats, "DOUBLE PRECISION"),
                array([], "BIGINT"),
                array([3], "INTEGER"),
                array([True, 12.7, -5, 2**62], "BIGINT"),  # (no NULL)
                array([True, 2.5, -0.0, float("-inf"), 7], "DOUBLE PRECISION"),
            ),
        ).fetchone()
    assert row == (
        texts,
        [1, None, 2**62, -7, 1, 12, 13],
        floats,
        [],
        [3],
        [1, 13, -5, 2**62],
        [1.0, 2.5, -0.0, float("-inf"), 7.0],
    )


def test_other_types_are_left_to_psycopg() -> None:
    assert array([True, False], "BOOLEAN") == [True, False]
