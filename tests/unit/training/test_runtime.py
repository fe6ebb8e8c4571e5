"""Runtime models (osml.runtime): encoding, one row and many agreeing, unknown/missing input, compiled trees."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from osml.predictor import OrderPredictor
from osml.runtime import (
    UNKNOWN_CODE,
    Calibrator,
    CompiledTrees,
    EtaMinutesModel,
    FeatureEncoder,
    SlaRiskModel,
    XGBoostScorer,
)
from osml.schema import SCHEMAS, Features, Priority
from tests.boosters import categorical_booster, odd_rows
from tests.support import SEED_FEATURES
from training.calibration import fit_calibrator

pytestmark = pytest.mark.unit


def test_encoder_maps_unknown_categories_to_the_reserved_bucket_and_missing_to_nan() -> None:
    frame = pd.DataFrame(
        {"priority": ["HIGH", "LOW", "HIGH"], "category": ["TI", "TI", "RH"], "createdHour": [1, 2, 3]}
    )
    encoder = FeatureEncoder.fit(frame, schema_version="1", min_count=1)
    row = encoder.encode([{"priority": "CRITICAL", "category": "TI", "createdHour": 5}])[0]
    columns = list(encoder.columns)
    assert row.dtype == np.float32
    assert row[columns.index("priority")] == UNKNOWN_CODE  # never seen in training
    assert row[columns.index("category")] == encoder.vocabularies[1]["TI"]
    assert row[columns.index("createdHour")] == 5
    assert math.isnan(row[columns.index("dueInMinutes")])  # optional key absent
    assert math.isnan(encoder.encode([{"priority": None}])[0][columns.index("priority")])


def test_encoder_drops_values_rarer_than_min_count() -> None:
    frame = pd.DataFrame({"priority": ["HIGH"] * 3 + ["LOW"], "category": ["TI"] * 4})
    encoder = FeatureEncoder.fit(frame, schema_version="1", min_count=2)
    assert set(encoder.vocabularies[0]) == {"HIGH"}


def test_dicts_and_frames_encode_alike_row_by_row(training_frame, feature_rows) -> None:  # type: ignore[no-untyped-def]
    _, _, encoder = training_frame
    rows = [*feature_rows, SEED_FEATURES, {**SEED_FEATURES, "location": "Nowhere-never-seen"}]
    many = encoder.encode(rows)
    np.testing.assert_array_equal(many, encoder.encode(pd.DataFrame(rows)))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(encoder.encode([row])[0], many[i])


def test_as_of_fields_left_out_mean_nothing_happened_since_creation() -> None:
    encoder = FeatureEncoder.from_counts({c: pd.Series(dtype=int) for c in SCHEMAS["4"][0]}, schema_version="4")
    rows = [
        {},  # a schema-3 payload: at creation
        {"timeSinceCreatedMinutes": 600},  # open for 10 h, no status change known
        {"timeSinceCreatedMinutes": 600, "minutesInStatus": 30, "statusChanges": 2, "pauses": 1, "reopens": 0},
    ]
    columns = list(encoder.columns)
    for encoded in (encoder.encode(rows), encoder.encode(pd.DataFrame(rows))):
        field = {c: encoded[:, columns.index(c)].tolist() for c in columns}
        assert field["timeSinceCreatedMinutes"] == [0, 600, 600]
        assert field["minutesInStatus"] == [0, 600, 30]
        assert field["statusChanges"] == [0, 0, 2]
        assert field["pauses"] == [0, 0, 1]
        # what the history's source may lack stays unknown
        assert all(math.isnan(v) for v in field["status"] + field["reassignments"] + field["reopens"][:2])
        assert field["reopens"][2] == 0


def test_frames_with_nullable_dtypes_encode_missing_as_nan() -> None:
    frame = pd.DataFrame({"priority": ["HIGH", None], "category": ["TI", "TI"], "createdHour": [1, 2]})
    encoder = FeatureEncoder.fit(frame, schema_version="1", min_count=1)
    nullable = frame.astype({"priority": "string", "createdHour": "Int64"})
    nullable.loc[1, "createdHour"] = pd.NA
    encoded = encoder.encode(nullable)
    assert math.isnan(encoded[1, 0]) and math.isnan(encoded[1, list(encoder.columns).index("createdHour")])
    assert encoded[0, 0] == encoder.vocabularies[0]["HIGH"]


def test_a_frame_of_mixed_dtypes_encodes_cell_by_cell_as_its_records_do() -> None:
    fitted = pd.DataFrame({"priority": ["1", "1.5", "HIGH", "True"], "category": ["TI", "7", "TI", "HR"]})
    encoder = FeatureEncoder.fit(fitted, schema_version="1", min_count=1)
    frame = pd.DataFrame(
        {
            # numbers and booleans in a categorical column are looked up by their text, as in a record
            "priority": pd.Series([1, 1.5, "HIGH", None, True, np.nan], dtype=object),
            "category": pd.Series([7, 7, pd.NA, 8, 7, 7], dtype="Int64"),
            "createdHour": pd.Series([1, None, 3, 4, 5, 6], dtype=object),
            "createdDayOfWeek": pd.Series([True, False, True, False, True, False]),
            "hasAssignee": pd.Series([1, pd.NA, 0, 1, 0, 1], dtype="Int64"),
        }  # no timeSinceCreatedMinutes column: missing everywhere
    )
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    by_row = encoder.encode(records)
    np.testing.assert_array_equal(encoder.encode(frame), by_row)
    assert by_row[0, 0] == encoder.vocabularies[0]["1"] and by_row[4, 0] == encoder.vocabularies[0]["True"]
    assert math.isnan(by_row[3, 0]) and math.isnan(by_row[2, 1]) and math.isnan(by_row[1, 2])


def test_sla_one_row_and_many_agree_and_are_probabilities(sla_model: SlaRiskModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    rows = feature_rows
    many = sla_model.predict(rows)
    one = np.array([sla_model.predict([r])[0] for r in rows])
    # single rows take the compiled-trees path, batches the booster: the same numbers, bit for bit
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(sla_model.predict(pd.DataFrame(rows)), many)
    assert np.all((many >= 0) & (many <= 1))
    assert isinstance(sla_model, OrderPredictor)
    assert sla_model.schema_version == "3"


def test_eta_one_row_and_many_agree_and_are_non_negative_minutes(eta_model: EtaMinutesModel, feature_rows) -> None:  # type: ignore[no-untyped-def]
    rows = feature_rows
    many = eta_model.predict(rows)
    np.testing.assert_array_equal([eta_model.predict([r])[0] for r in rows], many)
    np.testing.assert_array_equal(eta_model.predict(pd.DataFrame(rows)), many)
    assert np.all(many >= 0) and np.all(np.isfinite(many))


def test_seed_payload_unknown_values_and_validated_features_are_accepted(
    sla_model: SlaRiskModel, eta_model: EtaMinutesModel
) -> None:
    validated = Features.model_validate(SEED_FEATURES).model_dump()  # Priority enum, None for absent optionals
    assert validated["priority"] is Priority.HIGH
    odd = {**SEED_FEATURES, "category": "never-seen", "assignmentGroup": "ghosts", "dueInMinutes": None}
    for features in (SEED_FEATURES, validated, odd):
        risk, minutes = sla_model.predict([features])[0], eta_model.predict([features])[0]
        assert 0.0 <= risk <= 1.0 and minutes >= 0.0
    assert sla_model.predict([validated]) == sla_model.predict([SEED_FEATURES])


def test_empty_batches_give_empty_arrays(sla_model: SlaRiskModel) -> None:
    assert sla_model.predict([]).shape == (0,)
    assert sla_model.predict(pd.DataFrame()).shape == (0,)


def _single_rows(scorer: XGBoostScorer, rows: np.ndarray) -> np.ndarray:
    return np.array([scorer(rows[i : i + 1])[0] for i in range(len(rows))])


@pytest.mark.parametrize(
    "objective", ["binary:logistic", "reg:absoluteerror", "reg:squarederror", "reg:pseudohubererror"]
)
def test_compiled_trees_match_xgboost_on_unknown_codes_and_missing_values(objective: str) -> None:
    booster, x = categorical_booster(objective)
    scorer = XGBoostScorer(booster, sample=x[:300])
    assert scorer.compiled is not None
    probe = odd_rows(x)
    single = _single_rows(scorer, probe)
    np.testing.assert_array_equal(single, scorer(probe))
    np.testing.assert_allclose(single, booster.inplace_predict(probe), rtol=1e-6, atol=1e-7)


def test_ensembles_too_large_to_compile_take_the_booster(monkeypatch: pytest.MonkeyPatch) -> None:
    booster, x = categorical_booster("reg:absoluteerror")
    monkeypatch.setattr(CompiledTrees, "MAX_NODES", 100)
    scorer = XGBoostScorer(booster, sample=x[:300])
    assert scorer.compiled is None
    probe = odd_rows(x)
    np.testing.assert_array_equal(_single_rows(scorer, probe), scorer(probe))


def test_a_scorer_without_a_sample_predicts_through_the_booster() -> None:
    booster, x = categorical_booster("binary:logistic")
    scorer = XGBoostScorer(booster)
    assert scorer.compiled is None
    probe = odd_rows(x)
    np.testing.assert_array_equal(_single_rows(scorer, probe), scorer(probe))
    np.testing.assert_allclose(scorer(probe), booster.inplace_predict(probe), rtol=1e-6, atol=1e-7)


def test_isotonic_calibration_recovers_true_probabilities() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20_000)
    truth = 1 / (1 + np.exp(-2 * scores))  # the score is informative but not a probability
    labels = (rng.random(len(scores)) < truth).astype(float)
    calibrator = fit_calibrator(scores, labels)
    assert calibrator.method == "isotonic"
    calibrated = calibrator(scores)
    assert np.mean(np.abs(calibrated - truth)) < 0.03
    assert np.all(np.diff(calibrator(np.sort(scores))) >= 0)  # monotone: ranking (AUC) is preserved


def test_small_validation_slices_get_platt_scaling() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=300)
    labels = (rng.random(300) < 1 / (1 + np.exp(-3 * scores))).astype(float)
    calibrator = fit_calibrator(scores, labels)
    assert calibrator.method == "platt"
    assert 1.5 < calibrator.slope < 5.0
    assert calibrator(np.array([-10.0]))[0] < 0.01 < 0.99 < calibrator(np.array([10.0]))[0]


def test_calibrator_output_is_clipped_probability() -> None:
    calibrator = Calibrator("isotonic", x=np.array([0.0, 1.0]), y=np.array([0.1, 0.9]))
    np.testing.assert_allclose(calibrator(np.array([-5.0, 0.5, 5.0])), [0.1, 0.5, 0.9])


def test_an_overdue_order_has_breached_under_the_due_date_rule(sla_model: SlaRiskModel) -> None:
    rule = SlaRiskModel(sla_model.encoder, sla_model.scorer, sla_model.calibrator, overdue_is_breach=True)
    overdue, on_time, undated = ({**SEED_FEATURES, "dueInMinutes": d} for d in (-5, 5, None))
    assert rule.predict([overdue])[0] == 1.0
    assert sla_model.predict([overdue])[0] < 1.0, "without the rule the trees answer"
    np.testing.assert_array_equal(rule.predict([on_time, undated]), sla_model.predict([on_time, undated]))
    np.testing.assert_array_equal(rule.predict(pd.DataFrame([overdue, on_time]))[:1], [1.0])
