"""A pair's evaluation slice: the labelled test rows its evaluation model was scored on at training time, as JSON.

Training stores it with the SLA model of the pair (the artifact `evaluation.json` of the registered model, beside
`model_files`); the facade's promotion gate (serving/gate.py) reads it with this module, never importing training.
Columns, one value per row:

    features          feature name -> the row's /predict `features` value (null = absent)
    orderId, asOf     the row's order and prediction instant (Unix seconds): which rows two slices share
    createdAt         Unix seconds of the row's order creation (which orders a model did not train on)
    slaBreached       0/1; null where the SLA model is not scored (unlabelled, or its breach already known)
    remainingMinutes  minutes from the row's instant to done; null where unlabelled
    weight            each order weighs 1 over its snapshot rows, as in the training metrics
    slaRisk, etaMinutes  the evaluation models' predictions (fitted before the test slice: honest on it), null
                      where the label is

JSON only: nothing here can unpickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

FORMAT: Final = "osml-evaluation/1"
ARTIFACT: Final = "evaluation.json"  # its file name, and its key among the SLA model's artifacts
MAX_ROWS: Final = 20_000  # the newest rows of the test slice are kept

Value = str | int | float | None


class EvaluationSliceError(ValueError):
    """The file is not an osml evaluation slice."""


class EvaluationSlice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["osml-evaluation/1"] = FORMAT
    features: dict[str, list[Value]]
    orderId: list[str]
    asOf: list[float]
    createdAt: list[float]
    slaBreached: list[float | None]
    remainingMinutes: list[float | None]
    weight: list[float]
    slaRisk: list[float | None]
    etaMinutes: list[float | None]

    @model_validator(mode="after")
    def _one_value_per_row(self) -> Self:
        n = len(self.createdAt)
        columns: list[list[Any]] = [
            self.orderId,
            self.asOf,
            self.slaBreached,
            self.remainingMinutes,
            self.weight,
            self.slaRisk,
            self.etaMinutes,
            *self.features.values(),
        ]
        if any(len(column) != n for column in columns):
            raise ValueError("every column needs one value per row")
        return self

    def __len__(self) -> int:
        return len(self.createdAt)

    def rows(self) -> list[dict[str, Any]]:
        """The rows as /predict `features` (absent values left out), the dicts the predictors take."""
        names = list(self.features)
        return [
            {name: value for name, value in zip(names, values, strict=True) if value is not None}
            for values in zip(*self.features.values(), strict=True)
        ]

    def row_keys(self) -> list[tuple[str, float]]:
        """(orderId, asOf) of each row."""
        return list(zip(self.orderId, self.asOf, strict=True))

    def take(self, rows: list[int]) -> EvaluationSlice:
        """The rows at these positions, in this order."""
        return self.model_validate(
            {
                name: {f: [v[i] for i in rows] for f, v in value.items()}
                if name == "features"
                else [value[i] for i in rows]
                for name, value in self
                if name != "format"
            }
        )

    def labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """slaBreached, remainingMinutes (NaN where null) and the weights, as float arrays."""
        return _floats(self.slaBreached), _floats(self.remainingMinutes), np.asarray(self.weight, dtype=float)

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation models' slaRisk and etaMinutes (NaN where null)."""
        return _floats(self.slaRisk), _floats(self.etaMinutes)


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def save(evaluation: EvaluationSlice, path: Path) -> Path:
    path.write_text(evaluation.model_dump_json())
    return path


def load(path: Path) -> EvaluationSlice:
    try:
        return EvaluationSlice.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise EvaluationSliceError(f"{path} is not an osml evaluation slice: {exc}") from exc
