"""Small trained runtime models shared by the runtime and model-file tests (module-scoped: trained once each)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osml.runtime import EtaMinutesModel, FeatureEncoder, SlaRiskModel, XGBoostScorer
from training.calibration import fit_calibrator
from training.candidates import DEFAULTS, MAX_ROUNDS, Rows, Task, fit_booster
from training.data.synthetic import generate
from training.features import build_training_frame
from training.split import time_split


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
    return Rows(encoder.encode(frame.features)[rows], target[rows], np.ones(len(rows)), np.zeros(len(rows)))


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


@pytest.fixture(scope="module")
def feature_rows(training_frame) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """25 test-slice rows as /predict would send them (missing values as None)."""
    frame, split, _ = training_frame
    records = frame.features.iloc[split.test[:25]].to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]
