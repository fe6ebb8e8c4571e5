"""`osml score` refuses bad input with exit code 2 and a message naming what is wrong, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from osml.cli import main

pytestmark = pytest.mark.unit


def test_an_unreadable_as_of_is_refused_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["score", "--dataset", "x", "--as-of", "soon", "--out", "y.parquet"])
    assert exited.value.code == 2
    assert "--as-of" in capsys.readouterr().err


def test_an_output_of_no_known_kind_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--dataset", "x", "--out", str(tmp_path / "scores.json")]) == 2
    assert ".parquet" in capsys.readouterr().err


def test_no_pair_in_production_is_refused(
    sqlite_tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_tracking_uri)
    assert main(["score", "--dataset", "x", "--out", str(tmp_path / "scores.csv")]) == 2
    assert "no model pair is in production" in capsys.readouterr().err
