"""Reference profiles of a model's inputs and output, a bounded window of served rows, and PSI between them.

A profile bins every encoded column on the training rows: numerics by their training quantiles, categoricals by
their most frequent codes (the rest share one "other" bin), each with its own bin for missing values; the model's
output is binned like a numeric. The facade keeps the rows it serves in a `DriftWindow` (a preallocated ring
buffer: recording a request copies one row into it, nothing is allocated per request) and compares the window
with the profile by the population stability index, PSI = sum over bins of (a - e) ln(a / e).

Plain numpy on purpose: PSI over fixed bins is ~30 lines, where drift libraries (evidently, alibi-detect) bring
pandas reports, scipy or TensorFlow into a serving process and compute per call what a profile fixes once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from osml.runtime import EtaMinutesModel, RuntimeModel

# Proportions are floored at this before the log: an empty bin on one side would make PSI infinite.
_FLOOR = 1e-4
QUANTILE_BINS = 10
TOP_CATEGORIES = 20


class ColumnProfile(BaseModel):
    """One column's bins on the training rows. Numeric: `edges` (interior cut points, bins are
    (-inf, e0), [e0, e1), ..., [e_last, inf)). Categorical: `codes` (each its own bin, then one bin for all other
    codes). Then, in both, one bin for missing values. `expected` is the training share of each bin."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Annotated[str, Field(pattern="^(numeric|categorical)$")]
    edges: list[float] = []
    codes: list[int] = []
    labels: list[str] = []  # the categories the codes stand for, for people reading the file
    expected: list[float]

    def bin(self, values: np.ndarray) -> np.ndarray:
        """The bin index of each value (the last bin holds the missing ones)."""
        missing = np.isnan(values)
        if self.kind == "numeric":
            index = np.searchsorted(np.asarray(self.edges), values, side="right")
        else:
            hit = values[:, None] == np.asarray(self.codes, dtype=np.float64)[None, :]
            other = np.full(len(values), len(self.codes))
            index = np.where(hit.any(axis=1), hit.argmax(axis=1), other) if self.codes else other
        return np.where(missing, len(self.expected) - 1, index)

    def psi(self, values: np.ndarray) -> float:
        if not len(values):
            return 0.0
        actual = np.bincount(self.bin(values), minlength=len(self.expected)) / len(values)
        expected = np.maximum(np.asarray(self.expected), _FLOOR)
        actual = np.maximum(actual, _FLOOR)
        return float(np.sum((actual - expected) * np.log(actual / expected)))


def numeric_profile(name: str, values: np.ndarray) -> ColumnProfile:
    present = values[~np.isnan(values)]
    cuts = np.quantile(present, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]) if len(present) else np.empty(0)
    edges = [float(e) for e in np.unique(cuts)]
    column = ColumnProfile(name=name, kind="numeric", edges=edges, expected=[0.0])
    return column.model_copy(update={"expected": _shares(column, values, len(edges) + 2)})


def categorical_profile(name: str, values: np.ndarray, vocabulary: dict[str, int]) -> ColumnProfile:
    present = values[~np.isnan(values)].astype(np.int64)
    counts = np.bincount(present) if len(present) else np.zeros(0, dtype=np.int64)
    codes = [int(c) for c in np.argsort(-counts, kind="stable")[:TOP_CATEGORIES] if counts[c] > 0]
    names = {code: label for label, code in vocabulary.items()}
    labels = [names.get(c, "(unknown)") for c in codes]
    column = ColumnProfile(name=name, kind="categorical", codes=codes, labels=labels, expected=[0.0])
    return column.model_copy(update={"expected": _shares(column, values, len(codes) + 2)})


def _shares(column: ColumnProfile, values: np.ndarray, bins: int) -> list[float]:
    probe = column.model_copy(update={"expected": [0.0] * bins})
    counts = np.bincount(probe.bin(values), minlength=bins)
    return [float(c) for c in counts / max(len(values), 1)]


class Profile(BaseModel):
    """Every encoded column of a model and its output, on the training rows (the model's `profile.json`)."""

    model_config = ConfigDict(extra="forbid")

    format: Annotated[str, Field(pattern="^osml-profile/1$")] = "osml-profile/1"
    rows: int
    columns: list[ColumnProfile]
    output: ColumnProfile

    @classmethod
    def build(
        cls,
        matrix: np.ndarray,
        outputs: np.ndarray,
        *,
        categorical: Sequence[str],
        numeric: Sequence[str],
        vocabularies: Sequence[dict[str, int]],
        output: str,
    ) -> Profile:
        """`matrix`: the encoded training rows (`FeatureEncoder.encode`); `outputs`: the model's answers to them."""
        pairs = enumerate(zip(categorical, vocabularies, strict=True))
        columns = [categorical_profile(c, matrix[:, i], v) for i, (c, v) in pairs]
        offset = len(categorical)
        columns += [numeric_profile(c, matrix[:, offset + i]) for i, c in enumerate(numeric)]
        return cls(rows=len(matrix), columns=columns, output=numeric_profile(output, np.asarray(outputs, float)))


def of_model(model: RuntimeModel, matrix: np.ndarray) -> Profile:
    """The profile of `model` on its encoded training rows `matrix` (its output named as /predict names it)."""
    encoder = model.encoder
    output = "etaMinutes" if isinstance(model, EtaMinutesModel) else "slaRisk"
    return Profile.build(
        matrix,
        model.predict_matrix(matrix),
        categorical=encoder.categorical,
        numeric=encoder.numeric,
        vocabularies=encoder.vocabularies,
        output=output,
    )


class DriftWindow:
    """The last `size` served rows (one value per profiled column: the encoded features, then the outputs) and
    when each was served: a ring buffer allocated once, so recording costs a copy into it."""

    def __init__(self, columns: Sequence[ColumnProfile], size: int) -> None:
        self.columns = list(columns)
        self._rows = np.full((size, len(self.columns)), np.nan, dtype=np.float64)
        self._times = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._count = 0

    @property
    def size(self) -> int:
        return len(self._rows)

    def record(self, matrix: np.ndarray, now: float | None = None) -> None:
        size = len(self._rows)
        stamp = time.time() if now is None else now
        if len(matrix) == 1:  # a /predict request: no index arrays
            self._rows[self._next], self._times[self._next] = matrix[0], stamp
            self._next, self._count = (self._next + 1) % size, min(self._count + 1, size)
            return
        for start in range(0, len(matrix), size):  # a batch larger than the window keeps its last `size` rows
            block = matrix[start : start + size]
            slots = (self._next + np.arange(len(block))) % size
            self._rows[slots] = block
            self._times[slots] = stamp
            self._next = int((self._next + len(block)) % size)
            self._count = min(self._count + len(block), size)

    def report(self) -> dict[str, Any]:
        """PSI of every column over the window, with the window's size and span (Unix seconds)."""
        rows = self._rows[: self._count]
        times = self._times[: self._count]
        return {
            "rows": self._count,
            "capacity": self.size,
            "from": float(times.min()) if self._count else None,
            "to": float(times.max()) if self._count else None,
            # an empty window has nothing to compare yet
            "psi": {c.name: round(c.psi(rows[:, i]), 6) for i, c in enumerate(self.columns)} if self._count else {},
        }
