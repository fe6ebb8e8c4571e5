"""Reference profiles and drift (osml.profile): PSI of served rows against the training rows' profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osml import model_files
from osml.profile import DriftWindow, Profile, of_model
from osml.runtime import SlaRiskModel
from training.data.synthetic import generate
from training.features import build_training_frame

pytestmark = pytest.mark.unit
SHIFTED = {"priority", "assignmentGroupWorkloadOpen"}


def _profile(model: SlaRiskModel, frame: pd.DataFrame) -> Profile:
    return of_model(model, model.encoder.encode(frame))


def _window(profile: Profile, size: int) -> DriftWindow:
    return DriftWindow([*profile.columns, profile.output], size)


def _served(model: SlaRiskModel, frame: pd.DataFrame) -> np.ndarray:
    matrix = model.encoder.encode(frame)
    return np.column_stack([matrix, model.predict_matrix(matrix)])


def _serve(window: DriftWindow, model: SlaRiskModel, frame: pd.DataFrame) -> dict[str, float]:
    for start in range(0, len(frame), 7):  # requests and small batches, as traffic arrives
        window.record(_served(model, frame.iloc[start : start + 7]))
    psi: dict[str, float] = window.report()["psi"]
    return psi


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    """Enough orders that sampling noise stays far below the thresholds (PSI noise ~ bins / rows)."""
    return build_training_frame(generate(orders=5000, seed=17), schema_version="3").features


def test_traffic_like_training_is_stable_and_a_shift_shows_on_the_shifted_features(
    sla_model: SlaRiskModel, orders: pd.DataFrame
) -> None:
    # drawn like the training rows: a random part of the same orders (a later time slice would really drift:
    # open workloads grow over the synthetic history)
    order = np.random.default_rng(0).permutation(len(orders))
    cut = int(0.6 * len(order))
    train, served = orders.iloc[order[:cut]], orders.iloc[order[cut:]]
    profile = _profile(sla_model, train)

    alike = _serve(_window(profile, len(served)), sla_model, served)
    assert max(alike.values()) < 0.1, alike

    shifted_rows = served.assign(
        priority="CRITICAL", assignmentGroupWorkloadOpen=served["assignmentGroupWorkloadOpen"] * 5
    )
    shifted = _serve(_window(profile, len(served)), sla_model, shifted_rows)
    assert all(shifted[name] > 0.25 for name in SHIFTED), shifted
    assert all(v < 0.1 for name, v in shifted.items() if name not in SHIFTED | {"slaRisk"}), shifted


def test_the_window_keeps_only_its_last_rows_and_reports_their_span(sla_model: SlaRiskModel, training_frame) -> None:  # type: ignore[no-untyped-def]
    frame, split, _ = training_frame
    rows = frame.features.iloc[split.train]
    window = _window(_profile(sla_model, rows), 50)
    matrix = _served(sla_model, rows.iloc[:120])
    window.record(matrix[:30], now=100.0)
    window.record(matrix[30:], now=200.0)  # 90 rows into 50 slots: the oldest 70 are gone
    report = window.report()
    assert report["rows"] == 50 and report["from"] == 200.0 and report["to"] == 200.0
    window.record(matrix[:10], now=300.0)
    assert window.report()["from"] == 200.0 and window.report()["to"] == 300.0


def test_a_profile_round_trips_through_json(sla_model: SlaRiskModel, training_frame) -> None:  # type: ignore[no-untyped-def]
    frame, split, _ = training_frame
    profile = _profile(sla_model, frame.features.iloc[split.train])
    assert Profile.model_validate_json(profile.model_dump_json()) == profile
    assert all(abs(sum(c.expected) - 1) < 1e-9 for c in [*profile.columns, profile.output])


def test_the_profile_is_saved_and_loaded_with_the_model(sla_model: SlaRiskModel, training_frame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame, split, _ = training_frame
    sla_model.profile = _profile(sla_model, frame.features.iloc[split.train])
    try:
        directory = model_files.save(sla_model, tmp_path / "model")
        assert (directory / model_files.PROFILE_FILE).is_file()
        assert model_files.load(directory).profile == sla_model.profile
    finally:
        sla_model.profile = None


def test_a_column_never_seen_in_training_profiles_as_all_missing(sla_model: SlaRiskModel) -> None:
    rows = pd.DataFrame([{"priority": "HIGH", "category": "TI", "createdHour": h} for h in range(24)])
    profile = _profile(sla_model, rows)  # location, channel, ... absent from every row
    location = next(c for c in profile.columns if c.name == "location")
    assert location.codes == [] and location.expected == [0.0, 1.0]
    window = _window(profile, 100)
    window.record(_served(sla_model, rows))
    assert window.report()["psi"]["location"] == 0.0
    window.record(_served(sla_model, rows.assign(location="Lisbon")))  # now present: unknown codes, "other"
    assert window.report()["psi"]["location"] > 0.25
