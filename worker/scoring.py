"""What the worker predicts through: the facade over HTTP (`facade_client`) or in process (`local_scorer`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from worker.facade_client import Prediction, PredictItem


class Scorer(Protocol):
    """`predict_batch` answers in the order of its items; both raise FacadeRejected for an invalid request and
    TransientError for anything worth retrying."""

    async def predict(self, item: PredictItem) -> Prediction: ...

    async def predict_batch(self, items: Sequence[PredictItem]) -> list[Prediction]: ...

    async def aclose(self) -> None: ...
