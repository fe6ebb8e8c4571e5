"""Runtime models (osml.runtime): encoding, the three prediction paths agreeing, unknown/missing input."""

from __future__ import annotations

import math

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

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
from osml.schema import Features, Priority
from tests.support import SEED_FEATURES
from training.calibration import fit_calibrator
from training.candidates import DEFAULTS, MAX_ROUNDS, Rows, Task, fit_booster
from training.data.synthetic import generate
from training.features import build_training_frame
from training.split import time_split

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def training_frame():  # type: ignore[no-untyped-def]
    frame = build_training_frame(generate(orders=800, seed=3), schema_version="3")
    split = time_split(frame.created_at, test_size=0.2)
    encoder = FeatureEncoder.fit(frame.features.iloc[split.train], schema_version="3")
    return frame, split, encoder


def _rows_of(training_frame, task: str, block: np.ndarray) -> Rows:  # type: ignore[no-untyped-def]
    frame, _, encoder = training_frame
    target = (frame.sla if task == "sla" else np.log1p(frame.eta)).to_numpy(dtype=float)
    rows = block[np.isfinite(target[block])]
    return Rows(encoder.encode_frame(frame.features)[rows], target[rows], np.ones(len(rows)), np.zeros(len(rows)))


def _scorer(training_frame, task: Task, params: dict[str, object]) -> tuple[XGBoostScorer, Rows]:  # type: ignore[no-untyped-def]
    _, split, encoder = training_frame
    train, val = _rows_of(training_frame, task, split.train), _rows_of(training_frame, task, split.validation)
    fitted = fit_booster(task, params, encoder, train, seed=0, rounds=MAX_ROUNDS, stop_on=val)
    return XGBoostScorer(fitted.booster, sample=val.x), val


@pytest.fixture(scope="module")
def sla_model(training_frame) -> SlaRiskModel:  # type: ignore[no-untyped-def]
    scorer, val = _scorer(training_frame, "sla", DEFAULTS["sla"])
    return SlaRiskModel(training_frame[2], scorer, fit_calibrator(scorer(val.x), val.y))


# every identity-link objective the configuration search may choose for ETA
@pytest.fixture(
    scope="module",
    params=[
        {"objective": "reg:absoluteerror"},
        {"objective": "reg:squarederror"},
        {"objective": "reg:pseudohubererror"},
        {"objective": "reg:quantileerror", "quantile_alpha": 0.6},
    ],
    ids=lambda p: str(p["objective"]),
)
def eta_model(request, training_frame) -> EtaMinutesModel:  # type: ignore[no-untyped-def]
    scorer, _ = _scorer(training_frame, "eta", DEFAULTS["eta"] | request.param)
    return EtaMinutesModel(training_frame[2], scorer)


def _rows(training_frame) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    frame, split, _ = training_frame
    records = frame.features.iloc[split.test[:25]].to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def test_encoder_maps_unknown_categories_to_the_reserved_bucket_and_missing_to_nan() -> None:
    frame = pd.DataFrame(
        {"priority": ["HIGH", "LOW", "HIGH"], "category": ["TI", "TI", "RH"], "createdHour": [1, 2, 3]}
    )
    encoder = FeatureEncoder.fit(frame, schema_version="1", min_count=1)
    row = encoder.encode_one({"priority": "CRITICAL", "category": "TI", "createdHour": 5})[0]
    columns = list(encoder.columns)
    assert row.dtype == np.float32
    assert row[columns.index("priority")] == UNKNOWN_CODE  # never seen in training
    assert row[columns.index("category")] == encoder.vocabularies[1]["TI"]
    assert row[columns.index("createdHour")] == 5
    assert math.isnan(row[columns.index("dueInMinutes")])  # optional key absent
    assert math.isnan(encoder.encode_one({"priority": None})[0][columns.index("priority")])


def test_encoder_drops_values_rarer_than_min_count() -> None:
    frame = pd.DataFrame({"priority": ["HIGH"] * 3 + ["LOW"], "category": ["TI"] * 4})
    encoder = FeatureEncoder.fit(frame, schema_version="1", min_count=2)
    assert set(encoder.vocabularies[0]) == {"HIGH"}


def test_encode_one_many_and_frame_agree(training_frame) -> None:  # type: ignore[no-untyped-def]
    _, _, encoder = training_frame
    rows = [*_rows(training_frame), SEED_FEATURES, {**SEED_FEATURES, "location": "Nowhere-never-seen"}]
    many = encoder.encode_many(rows)
    np.testing.assert_array_equal(many, encoder.encode_frame(pd.DataFrame(rows)))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(encoder.encode_one(row)[0], many[i])


def test_sla_paths_agree_and_are_probabilities(sla_model: SlaRiskModel, training_frame) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(training_frame)
    many = sla_model.predict_many(rows)
    one = np.array([sla_model.predict_one(r) for r in rows])
    pyfunc = sla_model.predict(None, pd.DataFrame(rows))
    # single rows take the compiled-trees path, batches the booster: the same numbers, bit for bit
    np.testing.assert_array_equal(one, many)
    np.testing.assert_allclose(pyfunc, many, rtol=1e-6)
    assert np.all((many >= 0) & (many <= 1))
    assert isinstance(sla_model, OrderPredictor)
    assert sla_model.schema_version == "3"


def test_eta_paths_agree_and_are_non_negative_minutes(eta_model: EtaMinutesModel, training_frame) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(training_frame)
    many = eta_model.predict_many(rows)
    np.testing.assert_array_equal([eta_model.predict_one(r) for r in rows], many)
    np.testing.assert_allclose(eta_model.predict(None, pd.DataFrame(rows)), many, rtol=1e-6)
    assert np.all(many >= 0) and np.all(np.isfinite(many))


def test_seed_payload_unknown_values_and_validated_features_are_accepted(
    sla_model: SlaRiskModel, eta_model: EtaMinutesModel
) -> None:
    validated = Features.model_validate(SEED_FEATURES).model_dump()  # Priority enum, None for absent optionals
    assert validated["priority"] is Priority.HIGH
    odd = {**SEED_FEATURES, "category": "never-seen", "assignmentGroup": "ghosts", "dueInMinutes": None}
    for features in (SEED_FEATURES, validated, odd):
        risk, minutes = sla_model.predict_one(features), eta_model.predict_one(features)
        assert 0.0 <= risk <= 1.0 and minutes >= 0.0
    assert sla_model.predict_one(validated) == pytest.approx(sla_model.predict_one(SEED_FEATURES))


def test_models_survive_the_pickle_mlflow_uses(sla_model: SlaRiskModel, training_frame) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(training_frame)
    restored = cloudpickle.loads(cloudpickle.dumps(sla_model))
    np.testing.assert_allclose(restored.predict_many(rows), sla_model.predict_many(rows))


def test_empty_batches_give_empty_arrays(sla_model: SlaRiskModel) -> None:
    assert sla_model.predict_many([]).shape == (0,)
    assert sla_model.predict(None, pd.DataFrame()).shape == (0,)


def _categorical_booster(objective: str) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 4000
    x = np.column_stack([rng.integers(0, 40, n), rng.integers(0, 150, n), rng.normal(size=(n, 3))]).astype(np.float32)
    x[::5, 0], x[::7, 2], x[::11, 1] = np.nan, np.nan, np.nan
    y = ((x[:, 0] % 3 == 0) | (x[:, 2] > 0.5) | (x[:, 1] % 7 == 1)).astype(float)
    dtrain = xgb.DMatrix(x, label=y, feature_types=["c", "c", "q", "q", "q"], enable_categorical=True)
    params = {"objective": objective, "max_depth": 4, "max_cat_to_onehot": 1, "max_cat_threshold": 16}
    return xgb.train(params, dtrain, num_boost_round=200), x


def _odd_rows(x: np.ndarray) -> np.ndarray:
    probe = x[300:900].copy()
    probe[::13, 1] = 999  # a code no split has seen
    probe[::17, 0] = -3  # a negative code: in no set
    probe[::19, 1] = 2.7  # not an integer: XGBoost truncates
    probe[::29, 0] = 1e20
    probe[::23, 3] = np.inf
    return probe


def _single_rows(scorer: XGBoostScorer, rows: np.ndarray) -> np.ndarray:
    return np.array([scorer(rows[i : i + 1])[0] for i in range(len(rows))])


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:absoluteerror"])
def test_compiled_trees_match_xgboost_on_unknown_codes_and_missing_values(objective: str) -> None:
    booster, x = _categorical_booster(objective)
    scorer = XGBoostScorer(booster, sample=x[:300])
    assert scorer.compiled is not None
    probe = _odd_rows(x)
    single = _single_rows(scorer, probe)
    np.testing.assert_array_equal(single, scorer(probe))
    np.testing.assert_allclose(single, booster.inplace_predict(probe), rtol=1e-6, atol=1e-7)


def test_a_pickled_scorer_keeps_only_booster_and_sample_and_compiles_again() -> None:
    booster, x = _categorical_booster("binary:logistic")
    scorer = XGBoostScorer(booster, sample=x[:300])
    restored = cloudpickle.loads(cloudpickle.dumps(scorer))  # as MLflow pickles python models
    assert set(scorer.__getstate__()) == {"booster", "sample"}
    assert restored.compiled is not None
    probe = _odd_rows(x)
    np.testing.assert_array_equal(_single_rows(restored, probe), _single_rows(scorer, probe))


def test_ensembles_too_large_to_compile_take_the_booster(monkeypatch: pytest.MonkeyPatch) -> None:
    booster, x = _categorical_booster("reg:absoluteerror")
    monkeypatch.setattr(CompiledTrees, "MAX_NODES", 100)
    scorer = XGBoostScorer(booster, sample=x[:300])
    assert scorer.compiled is None
    probe = _odd_rows(x)
    np.testing.assert_array_equal(_single_rows(scorer, probe), scorer(probe))


def test_a_scorer_pickled_without_a_sample_still_predicts_through_the_booster() -> None:
    booster, x = _categorical_booster("binary:logistic")
    old = XGBoostScorer.__new__(XGBoostScorer)
    old.__setstate__({"booster": booster})  # the state models registered before the sample was kept
    assert old.compiled is None
    probe = _odd_rows(x)
    np.testing.assert_array_equal(_single_rows(old, probe), old(probe))
    np.testing.assert_allclose(old(probe), booster.inplace_predict(probe), rtol=1e-6, atol=1e-7)


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
