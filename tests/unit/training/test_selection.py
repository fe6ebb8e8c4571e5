"""The selection rule: best fold score, latency-aware tie-break, never a loser to the plain baseline."""

from __future__ import annotations

import numpy as np
import pytest

from training.by_point import Scored
from training.candidates import Task
from training.pipeline import _choose, _Outcome, _Scored
from training.tune import Assessment

pytestmark = pytest.mark.unit


def _candidate(task: Task, name: str, folds: tuple[float, ...], latency_ms: float) -> _Scored:
    baselines = (1.0,) * len(folds) if task == "sla" else (1000.0,) * len(folds)
    n = len(folds)
    assessment = Assessment(task, {}, folds, baselines, (np.zeros(1),) * n, 0.0, (1000.0,) * n, (100,) * n)
    outcome = _Outcome("", name, None, {}, dict, Scored(np.zeros(0, dtype=np.int64), np.zeros(0)))  # type: ignore[arg-type]
    return _Scored(name, assessment, None, latency_ms, outcome, params={}, metrics={})


def test_the_faster_of_two_near_equal_candidates_wins() -> None:
    slow = _candidate("sla", "tuned", (0.800, 0.802), latency_ms=0.3)
    fast = _candidate("sla", "default", (0.798, 0.800), latency_ms=0.1)
    assert _choose("sla", [slow, fast], plain_validation=0.79).name == "default"


def test_the_tie_break_never_picks_a_candidate_losing_to_the_plain_baseline_on_validation() -> None:
    slow = _candidate("sla", "tuned", (0.800, 0.802), latency_ms=0.3)
    fast = _candidate("sla", "default", (0.799, 0.7995), latency_ms=0.1)
    assert _choose("sla", [slow, fast], plain_validation=0.800).name == "tuned"


def test_eta_compares_mae_and_the_plain_floor_in_minutes() -> None:
    slow = _candidate("eta", "tuned", (700.0, 690.0), latency_ms=0.3)
    fast = _candidate("eta", "default", (703.0, 695.0), latency_ms=0.1)  # within 1% of the best MAE
    assert _choose("eta", [slow, fast], plain_validation=700.0).name == "default"
    assert _choose("eta", [slow, fast], plain_validation=692.0).name == "tuned"


def test_when_nothing_beats_the_plain_baseline_the_best_fold_score_is_kept() -> None:
    a = _candidate("sla", "a", (0.70, 0.71), latency_ms=0.1)
    b = _candidate("sla", "b", (0.72, 0.73), latency_ms=0.3)
    assert _choose("sla", [a, b], plain_validation=0.9).name == "b"
