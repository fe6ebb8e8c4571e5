"""What the facade accepts in a training request, checked without `training`, agrees with what training does."""

from __future__ import annotations

from typing import get_args

import pytest

from osml.train_requests import CANDIDATES, ENGINES, check_candidates, check_dataset_ref
from serving.payloads import TrainConfig
from training import candidates

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("names", [["xgboost"], ["xgboost_tuned"], ["xgboost", "xgboost_tuned"]])
def test_lists_that_train_both_models_pass(names: list[str]) -> None:
    check_candidates(names)
    for task in CANDIDATES:
        assert set(candidates.select(task, tuple(names))) == set(names)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["lightgbm"], "unknown candidates ['lightgbm']"),
        (["logistic_regression"], "unknown candidates ['logistic_regression']"),
        ([], "none of [] is a sla candidate"),
    ],
)
def test_lists_that_leave_a_model_without_a_family_are_refused(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_candidates(names)


@pytest.mark.parametrize(
    "ref",
    ["/data/orders.csv", "relative/folder", "file:///data/orders.csv", "s3://bucket/key", "postgresql://h/db"],
)
def test_references_the_trainer_can_read_pass_without_touching_them(ref: str) -> None:
    check_dataset_ref(ref)  # none of these exists here: existence is the trainer's to check


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("  ", "datasetRef is empty"),
        ("ftp://example/orders.csv", "unsupported datasetRef scheme 'ftp'"),
        ("file://otherhost/data.csv", "file:// URLs must name a local path"),
        ("s3:///key", "expected s3://bucket/key"),
        ("postgresql://u:secret@h/db?connect_timeout=x y", "invalid PostgreSQL URL"),
    ],
)
def test_bad_references_are_refused_without_their_password(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        check_dataset_ref(ref)
    assert "secret" not in str(caught.value)


def test_the_engines_a_request_may_name_are_those_training_runs() -> None:
    from training.engines import Engine

    accepted = get_args(get_args(TrainConfig.model_fields["engine"].annotation)[0])
    assert set(accepted) == set(ENGINES) == set(get_args(Engine))
