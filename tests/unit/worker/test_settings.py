"""The worker's explanation setting: off unless asked, and only a k the facade accepts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.settings import WorkerSettings

pytestmark = pytest.mark.unit


def test_explanations_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSML_WORKER_EXPLAIN", raising=False)
    assert WorkerSettings().worker_explain == 0


def test_explanations_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSML_WORKER_EXPLAIN", "50")
    assert WorkerSettings().worker_explain == 50


@pytest.mark.parametrize("value", ["-1", "51", "three"])
def test_a_k_the_facade_would_refuse_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OSML_WORKER_EXPLAIN", value)
    with pytest.raises(ValidationError, match="worker_explain"):
        WorkerSettings()
