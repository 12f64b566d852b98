"""Secret values encrypted and decrypted with a key handed in; names and values checked."""

from __future__ import annotations

import base64
import os

import pytest

from ordo.errors import ConfigError, NotFound, UsageError
from ordo.secrets import Key, SecretBox, check_name, check_value


def box(key: bytes | None = None, origin: str = "ORDO_SECRET_KEY") -> SecretBox:
    value = key or base64.urlsafe_b64encode(os.urandom(32))
    return SecretBox(lambda create: Key(value, origin))


def test_a_value_comes_back_from_its_ciphertext_which_does_not_hold_it() -> None:
    keeper = box()
    token = keeper.encrypt("DB", "hunter2 é")
    assert "hunter2" not in token
    assert keeper.decrypt("DB", token) == "hunter2 é"
    assert keeper.encrypt("DB", "hunter2 é") != token  # each encryption is new


def test_another_key_cannot_decrypt_and_the_error_names_secret_and_key() -> None:
    key = base64.urlsafe_b64encode(os.urandom(32))
    token = box(key).encrypt("DB_PW", "value")
    with pytest.raises(ConfigError) as caught:
        box(origin="/home/me/.ordo/secret.key").decrypt("DB_PW", token)
    message = str(caught.value)
    assert "DB_PW" in message and "key changed" in message
    assert "/home/me/.ordo/secret.key" in message
    assert box(key).decrypt("DB_PW", token) == "value"


def test_reveal_keeps_the_readable_and_says_why_for_the_others() -> None:
    good = box()
    rows = [("A", good.encrypt("A", "one")), ("B", box().encrypt("B", "two"))]
    vault = good.reveal(rows)
    assert vault.values == {"A": "one"}
    assert vault.get("A") == "one"
    with pytest.raises(ConfigError, match="'B' cannot be decrypted"):
        vault.get("B")
    with pytest.raises(NotFound, match=r"unknown secret 'C' \(secrets: A, B"):
        vault.get("C")


def test_a_malformed_key_is_a_clear_error_naming_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match="ORDO_SECRET_KEY: not a valid secret key"):
        box(b"too-short").encrypt("A", "v")


def test_without_a_key_nothing_can_be_read() -> None:
    vault = SecretBox(None).reveal([("A", "gAAAA")])
    assert vault.values == {}
    with pytest.raises(ConfigError, match="'A' cannot be read: no secret key"):
        vault.get("A")


@pytest.mark.parametrize("name", ["DB_PASSWORD", "_x", "a.b-c", "A1"])
def test_good_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "has space", "semi;colon", "x" * 201, "é"])
def test_bad_names_are_refused_saying_what_a_name_is(name: str) -> None:
    with pytest.raises(UsageError, match="expected a letter or _"):
        check_name(name)


def test_empty_and_huge_values_are_refused() -> None:
    with pytest.raises(UsageError, match="value is empty"):
        check_value("A", "")
    with pytest.raises(UsageError, match="at most"):
        check_value("A", "x" * (64 * 1024 + 1))
