"""Small trained runtime models shared by the runtime and model-file tests (module-scoped: trained once each)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from osml.runtime import EtaMinutesModel, FeatureEncoder, SlaRiskModel
from training.calibration import fit_calibrator
from training.candidates import CANDIDATES, TrainingSet
from training.data.synthetic import generate
from training.features import build_training_frame
from training.split import time_split


@pytest.fixture(scope="module")
def training_frame():  # type: ignore[no-untyped-def]
    frame = build_training_frame(generate(orders=800, seed=3), schema_version="3")
    split = time_split(frame.created_at, test_size=0.2)
    encoder = FeatureEncoder.fit(frame.features.iloc[split.train], schema_version="3")
    return frame, split, encoder


def _training_set(training_frame, task: str) -> TrainingSet:  # type: ignore[no-untyped-def]
    frame, split, encoder = training_frame
    target = (frame.sla if task == "sla" else np.log1p(frame.eta)).to_numpy(dtype=float)
    x = encoder.encode(frame.features)
    train = split.train[np.isfinite(target[split.train])]
    val = split.validation[np.isfinite(target[split.validation])]
    return TrainingSet(encoder, x[train], target[train], x[val], target[val], random_state=0)


@pytest.fixture(scope="module")
def sla_model(training_frame) -> SlaRiskModel:  # type: ignore[no-untyped-def]
    data = _training_set(training_frame, "sla")
    fitted = CANDIDATES["sla"]["xgboost"]("sla", data)
    return SlaRiskModel(data.encoder, fitted.scorer, fit_calibrator(fitted.scorer(data.x_val), data.y_val))


@pytest.fixture(scope="module")
def eta_model(training_frame) -> EtaMinutesModel:  # type: ignore[no-untyped-def]
    data = _training_set(training_frame, "eta")
    return EtaMinutesModel(data.encoder, CANDIDATES["eta"]["xgboost"]("eta", data).scorer)


@pytest.fixture(scope="module")
def feature_rows(training_frame) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """25 test-slice rows as /predict would send them (missing values as None)."""
    frame, split, _ = training_frame
    records = frame.features.iloc[split.test[:25]].to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]
