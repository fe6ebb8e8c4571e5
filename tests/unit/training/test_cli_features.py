"""`osml features`: one CSV row per (orderId, asOf) holding exactly the fields /predict accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from osml.cli import main
from osml.schema import Features, feature_columns
from training.data.orders import load_orders
from training.data.synthetic import generate, write_csv
from training.features import features_as_of
from training.snapshots import at_changes

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_csv(generate(orders=300, seed=4), folder)
    return folder


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["features", *args]) == 0
    summary: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary


def test_changes_rows_are_predict_payloads(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "features.csv"
    summary = _run(capsys, "--dataset", str(export), "--as-of", "changes", "--out", str(out))
    table = pd.read_csv(out, dtype={"status": str})
    assert tuple(table.columns) == ("orderId", "asOf", *feature_columns("4"))
    assert summary == {"rows": len(table), "orders": 300, "schema": "4", "out": str(out)}
    assert not table.duplicated(["orderId", "asOf"]).any()
    for record in table.drop(columns=["orderId", "asOf"]).to_dict(orient="records"):
        Features.model_validate({k: v for k, v in record.items() if not pd.isna(v)})  # absent = empty cell
    # the same numbers training computes
    data = load_orders(str(export))
    expected = features_as_of(data.orders, data.history, at_changes(data.orders, data.history), schema_version="4")
    assert table["statusChanges"].tolist() == expected["statusChanges"].tolist()
    assert table["minutesInStatus"].tolist() == pytest.approx(expected["minutesInStatus"].tolist())


def test_an_instant_gives_the_orders_open_then(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "now.csv"
    _run(capsys, "--dataset", str(export), "--as-of", "2025-01-09T12:00:00+01:00", "--out", str(out))
    table = pd.read_csv(out)
    assert len(table) > 0 and set(table["asOf"]) == {"2025-01-09T11:00:00Z"}
    orders = load_orders(str(export)).orders.set_index("id").loc[table["orderId"]]
    now = pd.Timestamp("2025-01-09T11:00:00Z")
    assert (orders["created_at"] <= now).all()
    assert (orders["done_at"].isna() | (orders["done_at"] > now)).all()
    assert (table["timeSinceCreatedMinutes"] >= 0).all()


def test_creation_rows_under_an_older_schema(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v3.csv"
    _run(capsys, "--dataset", str(export), "--as-of", "creation", "--schema", "3", "--out", str(out))
    table = pd.read_csv(out)
    assert tuple(table.columns) == ("orderId", "asOf", *feature_columns("3")) and len(table) == 300
    assert (table["timeSinceCreatedMinutes"] == 0).all()


def test_bad_input_is_a_message_not_a_trace(export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "--dataset", str(tmp_path / "nowhere"), "--as-of", "creation", "--out", "x.csv"]) == 2
    assert "osml features:" in capsys.readouterr().err
    assert main(["features", "--dataset", str(export), "--as-of", "creation", "--waiting", " ,", "--out", "x.csv"]) == 2
    assert "waiting-status marker" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["features", "--dataset", str(export), "--as-of", "someday", "--out", "x.csv"])
