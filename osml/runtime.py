"""Runtime models: what training builds, `osml.model_files` saves as data, and serving and the pyfunc predict with.

Every model is an XGBoost booster behind a `FeatureEncoder`: `predict(rows)` is the one prediction path, for
one row (a /predict request) or many (/predict/batch, the pyfunc's DataFrame, training's evaluation). This
module imports no MLflow: it is shipped inside each registered model (`osml.model_files.RUNTIME_MODULES`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from osml.schema import SCHEMAS
from osml.treeshap import TreeShap, categorical_sets

if TYPE_CHECKING:
    from osml.profile import Profile

# Code 0 of every categorical column is the reserved bucket for values unseen (or too rare) in training;
# a missing value is NaN, which XGBoost routes down each split's default branch.
UNKNOWN_CODE = 0

# Rows to predict: dicts shaped like a /predict `features` object (absent or None = missing), or a DataFrame
# with those columns (absent column or NaN = missing); missing as-of fields take their at-creation values
# (`FeatureEncoder._as_of_defaults`, docs/features.md).
Rows = Sequence[Mapping[str, Any]] | pd.DataFrame


@dataclass(frozen=True)
class FeatureEncoder:
    """Maps feature rows to float32 matrices: categorical codes, then numerics; NaN = missing."""

    schema_version: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    vocabularies: tuple[dict[str, int], ...]  # one per categorical column: value -> code >= 1

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, *, schema_version: str, min_count: int = 2, max_categories: int = 250
    ) -> FeatureEncoder:
        """Vocabularies from the training rows: the `max_categories` most frequent values seen `min_count` times."""
        categorical = SCHEMAS[schema_version][0]
        counts = {column: frame[column].dropna().astype(str).value_counts() for column in categorical}
        return cls.from_counts(
            counts, schema_version=schema_version, min_count=min_count, max_categories=max_categories
        )

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, pd.Series],
        *,
        schema_version: str,
        min_count: int = 2,
        max_categories: int = 250,
    ) -> FeatureEncoder:
        """`fit` from each categorical column's value counts (value -> rows), however they were counted."""
        categorical, numeric = SCHEMAS[schema_version]
        vocabularies = []
        for column in categorical:
            # ties broken by value, so any way of counting (one frame, Dask partitions) keeps the same values
            ranked = counts[column].sort_index().sort_values(ascending=False, kind="stable")
            kept = ranked[ranked >= min_count].index[:max_categories]
            vocabularies.append({str(value): code for code, value in enumerate(sorted(kept), start=1)})
        return cls(schema_version, categorical, numeric, tuple(vocabularies))

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric

    @property
    def n_categorical(self) -> int:
        return len(self.categorical)

    def cardinalities(self) -> tuple[int, ...]:
        """Number of codes per categorical column (vocabulary + the unknown bucket)."""
        return tuple(len(vocab) + 1 for vocab in self.vocabularies)

    def encode(self, rows: Rows) -> np.ndarray:
        """The one encoding: a request, a batch, a pyfunc DataFrame and training all take it.

        Dicts are encoded row by row on purpose: a request is one row, and per-column numpy calls would cost more
        than its whole prediction. A DataFrame is encoded column by column (training encodes frames of hundreds
        of thousands of rows), each cell exactly as its record would be. NaN counts as missing too (`v != v`), as
        a DataFrame or a hand-built dict may hold it.
        """
        if isinstance(rows, pd.DataFrame):
            return self._encode_frame(rows)
        categorical = tuple(zip(self.categorical, self.vocabularies, strict=True))
        matrix = [
            self._as_of_defaults_row(
                [
                    math.nan if (v := row.get(c)) is None or v != v else vocab.get(str(v), UNKNOWN_CODE)
                    for c, vocab in categorical
                ]
                + [math.nan if (v := row.get(c)) is None or v != v else float(v) for c in self.numeric]
            )
            for row in rows
        ]
        return np.array(matrix, dtype=np.float32).reshape(len(matrix), len(categorical) + len(self.numeric))

    # The as-of fields a payload leaves out are filled as docs/features.md defines them when nothing is known of
    # the order's life since its creation: no `timeSinceCreatedMinutes` means at creation (0), no
    # `minutesInStatus` means no status change (`timeSinceCreatedMinutes`), no `statusChanges` / `pauses` means
    # none. Training rows always carry them, so a missing value there would only send the trees down branches no
    # training row took (the seed's example, with none of them, was answered as an order overdue for days). The
    # same rule twice: in Python for a request's row (numpy calls on one row would cost more than the rest of
    # its encoding), vectorised for a frame.

    def _as_of_defaults_row(self, values: list[float]) -> list[float]:
        elapsed, in_status, counts = self._as_of_columns
        if values[elapsed] != values[elapsed]:
            values[elapsed] = 0.0
        if in_status is not None and values[in_status] != values[in_status]:
            values[in_status] = values[elapsed]
        for i in counts:
            if values[i] != values[i]:
                values[i] = 0.0
        return values

    def _as_of_defaults(self, matrix: np.ndarray) -> np.ndarray:
        elapsed, in_status, counts = self._as_of_columns
        t = matrix[:, elapsed]
        t[np.isnan(t)] = 0.0
        if in_status is not None:
            minutes = matrix[:, in_status]
            unknown = np.isnan(minutes)
            minutes[unknown] = t[unknown]
        if counts:
            values = matrix[:, counts]
            values[np.isnan(values)] = 0.0
            matrix[:, counts] = values
        return matrix

    @cached_property
    def _as_of_columns(self) -> tuple[int, int | None, list[int]]:
        """Where `timeSinceCreatedMinutes`, `minutesInStatus` and the counts that start at 0 are (those the
        schema has)."""
        columns = {c: i for i, c in enumerate(self.columns)}
        counts = [columns[c] for c in ("statusChanges", "pauses") if c in columns]
        return columns["timeSinceCreatedMinutes"], columns.get("minutesInStatus"), counts

    def _encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Column by column: a present categorical value is looked up by `str(value)` once per distinct text, a
        present numeric one converted by `float`; absent columns and NA cells (NaN, None, NaT, pd.NA) are NaN."""
        matrix = np.full((len(frame), len(self.columns)), np.nan, dtype=np.float32)
        for i, (column, vocab) in enumerate(zip(self.categorical, self.vocabularies, strict=True)):
            if column in frame.columns:
                present = frame[column].notna().to_numpy()
                codes, texts = pd.factorize(frame[column][present].astype(str))
                lookup = np.array([vocab.get(text, UNKNOWN_CODE) for text in texts], dtype=np.float32)
                matrix[present, i] = lookup[codes]
        for i, column in enumerate(self.numeric, start=self.n_categorical):
            if column in frame.columns:
                present = frame[column].notna().to_numpy()
                matrix[present, i] = frame[column][present].to_numpy(dtype=np.float64)
        return self._as_of_defaults(matrix)


class CompiledTrees:
    """An XGBoost tree ensemble compiled to one Python function that evaluates ONE row.

    `inplace_predict` costs ~0.3 ms of fixed overhead per call, and a vectorised numpy walk ~0.1 ms in
    per-operation overhead; a compiled comparison costs ~25 ns per split. Semantics follow XGBoost: numeric split
    -> left when x < threshold; categorical split -> right when the integer category is in the node's set (a
    negative or unseen category is in no set); missing -> the node's default direction; the margin is the base
    margin plus the leaves summed in float32 in tree order, so margins agree bit for bit. `XGBoostScorer` checks
    that agreement before using it, so a format surprise can cost speed, never accuracy. The generated source
    holds only numbers read from the booster.

    The trees are read from the booster's JSON model (`save_raw("json")`), the format XGBoost documents with a
    published JSON schema. Its other public views do not serve: `trees_to_dataframe` and `get_dump` go through a
    text dump whose rounded thresholds would not agree bit for bit, and neither gives the categorical sets.
    """

    # Beyond these the source (and its compile time) outgrows the gain; such models take `inplace_predict`.
    MAX_NODES = 200_000
    MAX_DEPTH = 48

    def __init__(self, booster: Any, base_margin: float) -> None:
        trees = booster_trees(booster)
        n_nodes = sum(len(tree["left_children"]) for tree in trees)
        depth = max((_tree_depth(tree["left_children"], tree["right_children"]) for tree in trees), default=1)
        if n_nodes > self.MAX_NODES or depth > self.MAX_DEPTH:
            raise ValueError(f"{len(trees)} trees, {n_nodes} nodes, depth {depth}: too large to compile")
        n_features = booster.num_features()
        categorical: set[int] = set()
        expressions = [_tree_expression(tree, categorical) for tree in trees]
        width = 1 + max((max(tree["categories"]) for tree in trees if tree["categories"]), default=0)
        lines = [f"def leaves({', '.join(f'x{i}' for i in range(n_features))}):"]
        # the integer code of each categorical argument; NaN and codes outside [0, width) are in no set
        lines += [f"    c{f} = int(x{f}) if 0.0 <= x{f} < {width} else -1" for f in sorted(categorical)]
        lines.append(f"    return ({''.join(e + ', ' for e in expressions)})")
        namespace: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<osml compiled trees>", "exec"), namespace)  # the source: numbers only
        self._leaves: Callable[..., tuple[float, ...]] = namespace["leaves"]
        self.base_margin = float(np.float32(base_margin))

    def margin_one(self, row: np.ndarray) -> float:
        values = np.array((self.base_margin, *self._leaves(*row.tolist())), dtype=np.float32)
        # cumsum accumulates sequentially (sum() would pair terms up and round differently from XGBoost)
        return float(np.cumsum(values, dtype=np.float32)[-1])


def booster_trees(booster: Any) -> list[dict[str, Any]]:
    """The trees of the booster's JSON model (`save_raw("json")`), XGBoost's documented, schema-described format."""
    model = json.loads(booster.save_raw("json").decode())
    trees: list[dict[str, Any]] = model["learner"]["gradient_booster"]["model"]["trees"]
    return trees


def _tree_expression(tree: dict[str, Any], categorical: set[int]) -> str:
    """One tree as nested conditional expressions over the arguments x<f> (and the codes c<f>)."""
    left, right = tree["left_children"], tree["right_children"]
    feature, condition, default_left = tree["split_indices"], tree["split_conditions"], tree["default_left"]
    sets = categorical_sets(tree)

    def expression(node: int) -> str:
        if left[node] == -1:
            return repr(float(np.float32(condition[node])))  # float32 leaf values are exact as Python floats
        f = feature[node]
        if tree["split_type"][node] == 1:
            categorical.add(f)
            members = sets.get(node)
            goes_left = f"c{f} not in {{{', '.join(map(str, members))}}}" if members else "True"
        else:
            goes_left = f"x{f} < {float(np.float32(condition[node]))!r}"  # NaN < t is False
        test = f"(x{f} != x{f} or {goes_left})" if default_left[node] else f"(x{f} == x{f} and {goes_left})"
        return f"({expression(left[node])} if {test} else {expression(right[node])})"

    return expression(0)


def _tree_depth(left: Sequence[int], right: Sequence[int]) -> int:
    depth, frontier = 0, [0]
    while frontier:
        depth += 1
        frontier = [c for n in frontier for c in (left[n], right[n]) if c != -1]
    return depth


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-margin)))


# objective -> inverse link from margin to prediction (None: identity); a base_score is on the prediction scale
_LINKS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "binary:logistic": _sigmoid,
    "reg:squarederror": None,
    "reg:absoluteerror": None,
    "reg:pseudohubererror": None,
    "reg:quantileerror": None,
}


class XGBoostScorer:
    """Margins from the booster (batches, `inplace_predict`) or `CompiledTrees` (single rows, once verified on
    `sample` to agree exactly), then the objective's inverse link in float64: both paths give the same numbers.

    `sample` is saved with the booster (`osml.model_files`), so every load compiles and verifies again with the
    code then installed.
    """

    def __init__(self, booster: Any, sample: np.ndarray | None = None) -> None:
        self.booster = booster
        self.sample = None if sample is None or not len(sample) else np.asarray(sample, dtype=np.float32)
        # one request = one row: threads only add hand-off latency
        self.booster.set_param({"nthread": 1})
        learner = json.loads(self.booster.save_config())["learner"]
        self.objective: str = learner["objective"]["name"]
        if self.objective not in _LINKS:
            raise ValueError(f"unsupported XGBoost objective {self.objective!r}")
        self.link = _LINKS[self.objective]
        base_score = np.float32(str(learner["learner_model_param"]["base_score"]).strip("[]"))
        # XGBoost turns the base score into a margin in float32 arithmetic; so must we, to agree exactly
        one = np.float32(1.0)
        self.base_margin = float(-np.log(one / base_score - one) if self.link is not None else base_score)
        self.compiled: CompiledTrees | None = None
        if self.sample is not None:
            self.compiled = self._compile(self.sample, self.base_margin)

    @cached_property
    def shap(self) -> TreeShap:
        """TreeSHAP of the margin, built on first use: most loads never explain."""
        return TreeShap(booster_trees(self.booster), self.booster.num_features(), self.base_margin)

    def _compile(self, sample: np.ndarray, base_margin: float) -> CompiledTrees | None:
        try:
            compiled = CompiledTrees(self.booster, base_margin)
        except ValueError:  # too large to compile: every row takes the booster
            return None
        margins = np.asarray(self.booster.inplace_predict(sample, predict_type="margin"), dtype=np.float32)
        mine = np.array([compiled.margin_one(row) for row in sample], dtype=np.float32)
        return compiled if np.array_equal(mine, margins) else None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.compiled is not None and rows.shape[0] == 1:
            margins = np.array([self.compiled.margin_one(rows[0])])
        else:
            margins = np.asarray(self.booster.inplace_predict(rows, predict_type="margin"), dtype=np.float64)
        return margins if self.link is None else self.link(margins)


# What a runtime model scores with: encoded rows -> a score (SLA) or log1p-minutes (ETA).
Scorer = XGBoostScorer


@dataclass(frozen=True, eq=False)
class Calibrator:
    """Score -> probability. Isotonic keeps its step function as (x, y) knots for `np.interp`; Platt is a sigmoid."""

    method: Literal["isotonic", "platt"]
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)
        return _sigmoid(self.slope * scores + self.intercept)


@dataclass(frozen=True)
class Contributions:
    """TreeSHAP of some rows on the booster's margin scale: `base + values.sum(axis=1) == margin` per row."""

    columns: tuple[str, ...]
    values: np.ndarray  # (rows, features), float64
    base: np.ndarray  # (rows,): the expected margin, the same for every row
    margin: np.ndarray  # (rows,)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row, the column indices of the `k` largest contributions by magnitude, their values, and the sum
        of all the others (so base + top + rest is still the margin)."""
        order = np.argsort(-np.abs(self.values), axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(self.values, order, axis=1)
        return order, chosen, self.values.sum(axis=1) - chosen.sum(axis=1)


# Explanations are rounded for reading, finely enough that base + contributions + rest still meet the margin to 1e-5
_MARGIN_DIGITS = 6


@dataclass(frozen=True)
class _Units:
    """How an explanation names its margin, and the readable translation of the base and of each contribution."""

    margin: str
    base: str
    base_digits: int
    delta: str
    scale: float
    delta_digits: int


class _RuntimeModel:
    def __init__(self, encoder: FeatureEncoder, scorer: Scorer) -> None:
        self.encoder = encoder
        self.scorer = scorer
        # the training rows' profile (`osml.profile`), saved beside the model when training made one
        self.profile: Profile | None = None

    @property
    def schema_version(self) -> str:
        return self.encoder.schema_version

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, rows: Rows) -> np.ndarray:
        """One prediction per row, float64 (one row takes the compiled trees, more take the booster)."""
        if not len(rows):
            return np.empty(0, dtype=np.float64)
        return self.predict_matrix(self.encoder.encode(rows))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """`predict` of rows already encoded (`FeatureEncoder.encode`)."""
        return self._finish(self.scorer(matrix))

    def _readable(self, margin: np.ndarray) -> np.ndarray:
        """A margin as the model's answer: the objective's link, then `_finish` (calibration or expm1)."""
        return self._finish(margin if self.scorer.link is None else self.scorer.link(margin))

    def _explain(self, rows: Rows, k: int, units: _Units) -> list[dict[str, Any]]:
        shap = self.contributions(rows)
        order, chosen, rest = shap.top(k)
        base = self._readable(shap.base)
        moved = units.scale * (self._readable(shap.base[:, None] + chosen) - base[:, None])
        margin_key, digits = units.margin, _MARGIN_DIGITS
        return [
            {
                "base": {margin_key: round(b, digits), units.base: round(rb, units.base_digits)},
                margin_key: round(m, digits),
                "contributions": [
                    {
                        "feature": shap.columns[i],
                        margin_key: round(c, digits),
                        units.delta: round(d, units.delta_digits),
                    }
                    for i, c, d in zip(o, cs, ds, strict=True)
                ],
                "rest": {margin_key: round(r, digits)},
            }
            for b, rb, m, o, cs, ds, r in zip(
                shap.base.tolist(),
                base.tolist(),
                shap.margin.tolist(),
                order.tolist(),
                chosen.tolist(),
                moved.tolist(),
                rest.tolist(),
                strict=True,
            )
        ]

    def contributions(self, rows: Rows) -> Contributions:
        """Exact TreeSHAP (`osml.treeshap`, XGBoost's `pred_contribs` numbers) of each row's margin: log-odds for
        the SLA booster, log1p-minutes for the ETA booster."""
        values, base = self.scorer.shap(self.encoder.encode(rows))
        bases = np.full(len(values), base)
        return Contributions(self.encoder.columns, values, bases, bases + values.sum(axis=1))


class SlaRiskModel(_RuntimeModel):
    """Calibrated probability that the order breaches its SLA.

    With `overdue_is_breach` (the model's label is the due-date rule, docs/features.md), an order predicted past
    its due date (`dueInMinutes` < 0) has already breached: its risk is 1.0, whatever the trees say.
    """

    def __init__(
        self, encoder: FeatureEncoder, scorer: Scorer, calibrator: Calibrator, *, overdue_is_breach: bool = False
    ) -> None:
        super().__init__(encoder, scorer)
        self.calibrator = calibrator
        self.overdue_is_breach = overdue_is_breach
        self._due = encoder.columns.index("dueInMinutes") if "dueInMinutes" in encoder.columns else None

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.calibrator(raw), 0.0, 1.0)

    def predict(self, rows: Rows) -> np.ndarray:
        if not len(rows):
            return np.empty(0, dtype=np.float64)
        x = self.encoder.encode(rows)
        risk = self._finish(self.scorer(x))
        if self.overdue_is_breach and self._due is not None:
            risk[x[:, self._due] < 0] = 1.0  # NaN (no due date) compares False
        return risk

    def explain(self, rows: Rows, k: int) -> list[dict[str, Any]]:
        """Per row, the `k` largest TreeSHAP contributions to the booster's log-odds, each also in probability
        points: 100 x (the calibrated probability of base + that contribution alone - that of the base). Points do
        not add up (the sigmoid and the calibration bend), log-odds do: base + contributions + rest = margin."""
        return self._explain(rows, k, _Units("logOdds", "probability", 4, "probabilityPoints", 100.0, 2))


class EtaMinutesModel(_RuntimeModel):
    """Minutes to resolution; the booster was fitted on log1p(minutes) because durations are long-tailed."""

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(np.expm1(raw), 0.0, None)

    def explain(self, rows: Rows, k: int) -> list[dict[str, Any]]:
        """Per row, the `k` largest TreeSHAP contributions to log1p(minutes), each also in minutes: the ETA of
        base + that contribution alone minus the ETA of the base. Minutes do not add up (expm1 bends), log1p-minutes
        do: base + contributions + rest = the booster's log1p(minutes)."""
        return self._explain(rows, k, _Units("log1pMinutes", "minutes", 1, "minutes", 1.0, 1))


RuntimeModel = SlaRiskModel | EtaMinutesModel
