from __future__ import annotations

from decimal import Decimal

import pytest

from worker.migrate import psycopg_url, sqlalchemy_url
from worker.store import eta_whole_minutes, sla_risk_4dp

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (0.78, "0.7800"),
        (0.123456, "0.1235"),
        (0.00004, "0.0000"),
        (0.99996, "1.0000"),
        (1.2, "1.0000"),
        (-0.1, "0.0000"),
    ],
)
def test_sla_risk_fits_numeric_5_4(value: float, stored: str) -> None:
    assert sla_risk_4dp(value) == Decimal(stored)


def test_eta_is_whole_non_negative_minutes() -> None:
    assert eta_whole_minutes(239.6) == 240
    assert eta_whole_minutes(-3.0) == 0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h:5432/db",
        "postgresql+psycopg://u@h:5432/db",
        "postgres://u@h:5432/db",
        "postgresql+psycopg2://u@h/db",
    ],
)
def test_database_urls_are_normalised_per_driver(url: str) -> None:
    assert psycopg_url(url).startswith("postgresql://u@h")
    assert sqlalchemy_url(url).startswith("postgresql+psycopg://u@h")
