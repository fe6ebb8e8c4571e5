"""The evaluation slice file: rows as /predict features, row selection, and nothing but JSON."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from osml import evaluation_slice
from osml.evaluation_slice import EvaluationSlice, EvaluationSliceError

pytestmark = pytest.mark.unit


def three_rows() -> EvaluationSlice:
    return EvaluationSlice(
        features={"priority": ["LOW", "HIGH", "LOW"], "dueInMinutes": [60.0, None, 30]},
        orderId=["OS-1", "OS-2", "OS-2"],
        asOf=[100.0, 200.0, 260.0],
        createdAt=[100.0, 200.0, 200.0],
        slaBreached=[0.0, None, 1.0],
        remainingMinutes=[50.0, 20.0, None],
        weight=[1.0, 0.5, 0.5],
        slaRisk=[0.1, None, 0.7],
        etaMinutes=[40.0, 25.0, None],
    )


def test_rows_are_predict_features_with_absent_values_left_out() -> None:
    assert three_rows().rows() == [
        {"priority": "LOW", "dueInMinutes": 60.0},
        {"priority": "HIGH"},
        {"priority": "LOW", "dueInMinutes": 30},
    ]


def test_taken_rows_keep_their_keys_labels_and_predictions() -> None:
    taken = three_rows().take([2, 0])
    assert taken.row_keys() == [("OS-2", 260.0), ("OS-1", 100.0)]
    assert taken.rows() == [{"priority": "LOW", "dueInMinutes": 30}, {"priority": "LOW", "dueInMinutes": 60.0}]
    breached, remaining, weight = taken.labels()
    np.testing.assert_array_equal(breached, [1.0, 0.0])
    np.testing.assert_array_equal(remaining, [np.nan, 50.0])
    np.testing.assert_array_equal(weight, [0.5, 1.0])
    risk, minutes = taken.predictions()
    np.testing.assert_array_equal(risk, [0.7, 0.1])
    np.testing.assert_array_equal(minutes, [np.nan, 40.0])


def test_a_saved_slice_loads_back(tmp_path: Path) -> None:
    path = evaluation_slice.save(three_rows(), tmp_path / evaluation_slice.ARTIFACT)
    assert evaluation_slice.load(path) == three_rows()


def test_columns_of_different_lengths_are_refused() -> None:
    fields = three_rows().model_dump()
    fields["weight"] = [1.0]
    with pytest.raises(ValueError, match="one value per row"):
        EvaluationSlice.model_validate(fields)


def test_a_pickle_or_a_foreign_file_is_refused_never_unpickled(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.json"
    pickled.write_bytes(pickle.dumps(three_rows().model_dump()))
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": "something-else/1"}')
    for path in (pickled, foreign):
        with pytest.raises(EvaluationSliceError, match="not an osml evaluation slice"):
            evaluation_slice.load(path)
