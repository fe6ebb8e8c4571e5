"""Window names and the evaluator's settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from worker.live.settings import LiveSettings
from worker.live.windows import parse_windows

pytestmark = pytest.mark.unit


def test_windows_parse_shortest_first() -> None:
    windows = parse_windows("30d, 12h,7d")
    assert [(w.name, w.span) for w in windows] == [
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
    ]


@pytest.mark.parametrize("text", ["", "7", "0d", "1w", "7d,7d", "-1d"])
def test_malformed_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_windows(text)


def test_settings_read_windows_and_outcomes_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSML_DATABASE_URL", "postgresql://db/predictions")
    monkeypatch.setenv("OSML_LIVE_WINDOWS", "1d,30d")
    settings = LiveSettings()
    assert [w.name for w in settings.windows] == ["1d", "30d"]
    assert settings.outcomes_url == "postgresql://db/predictions"
    monkeypatch.setenv("OSML_OUTCOMES_DATABASE_URL", "postgresql://backend/app")
    monkeypatch.setenv("OSML_OUTCOMES_TABLE", "sales.orders")
    settings = LiveSettings()
    assert (settings.outcomes_url, settings.outcomes_table) == ("postgresql://backend/app", "sales.orders")


@pytest.mark.parametrize(("name", "value"), [("OSML_LIVE_WINDOWS", "7x"), ("OSML_OUTCOMES_TABLE", "orders; drop")])
def test_bad_settings_name_the_field(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("OSML_").lower()):
        LiveSettings()
