"""Settings from the environment over the settings file over the defaults; every bad
value named with where it came from."""

from __future__ import annotations

import pytest

from ordo.errors import ConfigError
from ordo.settings import Settings, from_sources

FILE = "/home/me/.ordo/settings.toml"


def test_defaults_without_file_or_environment() -> None:
    found = from_sources({})
    assert found == Settings(retention_days=30, retention_dev_days=3)
    assert set(found.origins.values()) == {"default"}


def test_the_file_sets_retention_and_the_environment_wins() -> None:
    text = "[retention]\ndays = 90\ndev_days = 0.5\n"
    from_file = from_sources({}, text, FILE)
    assert (from_file.retention_days, from_file.retention_dev_days) == (90, 0.5)
    assert from_file.origins["retention.days"] == FILE
    both = from_sources({"ORDO_RETENTION_DAYS": "7", "ORDO_RETENTION_DEV_DAYS": ""}, text, FILE)
    assert (both.retention_days, both.retention_dev_days) == (7, 0.5)
    assert both.origins["retention.days"] == "ORDO_RETENTION_DAYS"
    assert both.origins["retention.dev_days"] == FILE


def test_an_empty_file_or_table_keeps_the_defaults() -> None:
    assert from_sources({}, "", FILE) == Settings()
    assert from_sources({}, "[retention]\n", FILE) == Settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[retention]\ndays = -1\n", f"{FILE}: retention.days: must be >= 0, got -1"),
        (
            '[retention]\ndev_days = "3"\n',
            f"{FILE}: retention.dev_days: must be a number of days, got '3'",
        ),
        ("[retention]\ndays = true\n", f"{FILE}: retention.days: must be a number of days"),
        (
            "[retention]\nday = 3\n",
            f"{FILE}: unknown setting 'retention.day' (did you mean 'retention.days'?); "
            "known settings: retention.days, retention.dev_days",
        ),
        (
            "[retension]\ndays = 3\n",
            f"{FILE}: unknown table [retension] (did you mean [retention]?)",
        ),
        ("retention = 3\n", f"{FILE}: retention: expected a table ([retention]) of settings"),
        ("[retention\n", f"{FILE}: not valid TOML: "),
    ],
)
def test_a_bad_file_value_names_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_sources({}, text, FILE)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-2", "environment ORDO_RETENTION_DAYS: retention.days: must be >= 0, got -2"),
        (
            "soon",
            "environment ORDO_RETENTION_DAYS: retention.days: must be a number of days, got 'soon'",
        ),
        (
            "nan",
            "environment ORDO_RETENTION_DAYS: retention.days: must be a number of days, got nan",
        ),
    ],
)
def test_a_bad_environment_value_names_the_variable(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_sources({"ORDO_RETENTION_DAYS": value})
    assert str(caught.value) == message


def test_every_problem_is_reported_at_once() -> None:
    env = {"ORDO_RETENTION_DEV_DAYS": "-1"}
    with pytest.raises(ConfigError) as caught:
        from_sources(env, "[retention]\ndays = -5\n", FILE)
    assert str(caught.value).splitlines() == [
        f"{FILE}: retention.days: must be >= 0, got -5",
        "environment ORDO_RETENTION_DEV_DAYS: retention.dev_days: must be >= 0, got -1",
    ]


def test_smtp_and_server_settings_come_from_the_file_and_the_environment() -> None:
    text = '[smtp]\nhost = "mail.example.com"\nport = 587\n[server]\nurl = "https://ordo.example.com"\n'
    found = from_sources({"ORDO_SMTP_PASSWORD": "pw", "ORDO_SMTP_PORT": "465"}, text, FILE)
    assert (found.smtp_host, found.smtp_port, found.smtp_password) == (
        "mail.example.com",
        465,
        "pw",
    )
    assert found.server_url == "https://ordo.example.com"
    with pytest.raises(ConfigError) as bad:
        from_sources({"ORDO_SMTP_PORT": "many"}, "[smtp]\nhost = 5\n", FILE)
    assert "ORDO_SMTP_PORT" in str(bad.value) and "smtp.host: must be a string" in str(bad.value)


def test_the_store_may_be_named_outside_any_table() -> None:
    found = from_sources({}, 'db = "postgresql://ordo@db/ordo"\n[retention]\ndays = 5\n', FILE)
    assert (found.db, found.retention_days) == ("postgresql://ordo@db/ordo", 5)
    assert found.origins["db"] == FILE
    assert from_sources({"ORDO_DB": "x.db"}, 'db = "y.db"\n', FILE).db == "x.db"
    with pytest.raises(ConfigError, match="db: must be a string, got 3"):
        from_sources({}, "db = 3\n", FILE)
