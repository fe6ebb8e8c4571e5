"""The promotion gate: a candidate pair replaces production only when it scores about as well on the same rows.

Each pair stores its evaluation slice (`osml.evaluation_slice`): the test rows its evaluation models were scored on
at training time, with their labels and those models' predictions. Each row is predicted, for each of the two
pairs, only where that pair did not train on it: a row of the pair's own slice by its stored evaluation-model
prediction (fitted before the test slice), a row of an order created after the pair's `osml.ordersUntil` by the
loaded pair itself; a row that pair trained on is left out. The rows are, first, those of the slice of the pair
trained on the newest orders, when it is newer than the candidate's (source `recent`: the candidate is scored as
it would serve), else the candidate's own slice (source `evaluation`: the candidate is scored by its evaluation
models, as its training run reports). Rows usable for neither: source `none`, and the gate passes.

The figures are the training metrics' (`osml.metrics`, per-row weights): SLA ROC AUC on the rows with an SLA label
and ETA MAE in minutes on the rows with a remaining-time label. The candidate is refused when its AUC is lower
than production's by more than `auc_margin` (absolute) or its MAE higher by more than `mae_margin` (relative).
Every comparison is recorded as a run of the MLflow experiment `osml-gate` (docs/serving.md, "Promotion gate");
a recording that fails (an identity that may not write there) is logged and changes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from osml import registry
from osml.conventions import SLA_MODEL_NAME, TAG_MODEL_VERSION
from osml.evaluation_slice import EvaluationSlice
from osml.experiments import ensure_experiment
from osml.metrics import auc, mae
from osml.registry import ModelPair
from serving.errors import GateRefused

if TYPE_CHECKING:  # the store imports this module
    from serving.model_store import ActivePair

log = logging.getLogger("osml.serving.gate")

GATE_EXPERIMENT_NAME: Final = "osml-gate"
# on the candidate's SLA version: the production modelVersion an admin forced it over, so that every facade
# following the alias serves it (their pollers gate it too)
TAG_FORCED_OVER: Final = "osml.gate.forcedOver"
TAG_DECISION: Final = "osml.gate.decision"
TAG_VIA: Final = "osml.gate.via"

Source = Literal["recent", "evaluation", "none"]
Decision = Literal["passed", "refused", "forced"]
Via = Literal["activate", "poll", "cli"]


@dataclass(frozen=True)
class Scores:
    auc: float  # NaN: the rows hold a single SLA class
    mae_minutes: float  # NaN: no row has a remaining-time label


@dataclass(frozen=True)
class Comparison:
    candidate: str
    production: str
    source: Source
    source_model_version: str | None  # whose evaluation slice the rows came from
    sla_rows: int
    eta_rows: int
    candidate_scores: Scores
    production_scores: Scores
    auc_margin: float
    mae_margin: float
    reasons: tuple[str, ...]  # why it is refused; empty: it passes

    @property
    def passed(self) -> bool:
        return not self.reasons

    def figures(self) -> dict[str, Any]:
        """The 409 body's `gate`, GET /models' `gateRefused` and the structured log fields (NaN as null)."""

        def pair(version: str, scores: Scores) -> dict[str, Any]:
            return {"modelVersion": version, "auc": _finite(scores.auc), "maeMinutes": _finite(scores.mae_minutes)}

        return {
            "candidate": pair(self.candidate, self.candidate_scores),
            "production": pair(self.production, self.production_scores),
            "rows": {"sla": self.sla_rows, "eta": self.eta_rows},
            "source": self.source,
            "sourceModelVersion": self.source_model_version,
            "margins": {"auc": self.auc_margin, "maeRelative": self.mae_margin},
            "reasons": list(self.reasons),
        }


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _instant(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def predictions(
    model: ActivePair, evaluation: EvaluationSlice, *, own: EvaluationSlice | None, cutoff: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The pair's SLA and ETA predictions of each row it did not train on, NaN on the rows it did.

    A row of the pair's own evaluation slice gets the prediction its evaluation model made at training time (that
    model was fitted before the test slice; the served one was refit on it); a row of an order created after the
    pair's `cutoff` (its `osml.ordersUntil`) gets the served pair's prediction.
    """
    n = len(evaluation)
    sla, eta = np.full(n, np.nan), np.full(n, np.nan)
    stored = {key: i for i, key in enumerate(own.row_keys())} if own is not None else {}
    at = np.array([stored.get(key, -1) for key in evaluation.row_keys()], dtype=int)
    mine = at >= 0
    if own is not None and mine.any():
        own_sla, own_eta = own.predictions()
        sla[mine], eta[mine] = own_sla[at[mine]], own_eta[at[mine]]
    unseen = np.flatnonzero(~mine & (np.asarray(evaluation.createdAt) > (math.inf if cutoff is None else cutoff)))
    if len(unseen):
        rows = evaluation.take(unseen.tolist()).rows()
        sla[unseen] = np.asarray(model.sla.predict(rows), dtype=float)
        eta[unseen] = np.asarray(model.eta.predict(rows), dtype=float)
    return sla, eta


class Gate:
    """Compares a loaded candidate with the loaded production pair and records each comparison (blocking)."""

    def __init__(
        self,
        *,
        client: Callable[[], MlflowClient],
        tracking_uri: str,
        read_slice: Callable[[ModelPair], EvaluationSlice | None],
        auc_margin: float,
        mae_margin: float,
    ) -> None:
        self._client = client
        self._tracking_uri = tracking_uri
        self._read_slice = read_slice
        self.auc_margin = auc_margin
        self.mae_margin = mae_margin

    def _sources(self, pair: ModelPair, pairs: list[ModelPair]) -> list[tuple[Source, ModelPair]]:
        """Where rows the candidate did not train on may be: the slice of the pair trained on the newest orders
        (when newer than the candidate's), then the candidate's own."""
        cutoff = _instant(pair.orders_until)
        newer = [
            p
            for p in pairs
            if p.model_version != pair.model_version
            and p.schema_version == pair.schema_version
            and cutoff is not None
            and (_instant(p.orders_until) or -math.inf) > cutoff
        ]
        sources: list[tuple[Source, ModelPair]] = []
        if newer:
            sources.append(("recent", max(newer, key=lambda p: _instant(p.orders_until) or -math.inf)))
        return [*sources, ("evaluation", pair)]

    def compare(self, pair: ModelPair, candidate: ActivePair, production: ActivePair) -> Comparison:
        """Both pairs on the first source holding rows neither trained on (see the module docstring)."""
        pairs = registry.list_pairs(self._client())
        production_pair = next((p for p in pairs if p.model_version == production.model_version), None)
        slices: dict[str, EvaluationSlice | None] = {}

        def slice_of(p: ModelPair | None) -> EvaluationSlice | None:
            if p is None:
                return None
            if p.model_version not in slices:
                slices[p.model_version] = self._read_slice(p)
            return slices[p.model_version]

        for source, holder in self._sources(pair, pairs):
            evaluation = slice_of(holder)
            if evaluation is None or not len(evaluation):
                continue
            ours = predictions(candidate, evaluation, own=slice_of(pair), cutoff=_instant(pair.orders_until))
            theirs = predictions(
                production,
                evaluation,
                own=slice_of(production_pair),
                cutoff=_instant(production_pair.orders_until) if production_pair is not None else None,
            )
            comparison = self._scored(pair, production, source, holder.model_version, evaluation, ours, theirs)
            if comparison.sla_rows or comparison.eta_rows:
                return comparison
        unscored = Scores(math.nan, math.nan)
        return self._judged(pair.model_version, production.model_version, "none", None, (0, 0), unscored, unscored)

    def _scored(
        self,
        pair: ModelPair,
        production: ActivePair,
        source: Source,
        holder: str,
        evaluation: EvaluationSlice,
        ours: tuple[np.ndarray, np.ndarray],
        theirs: tuple[np.ndarray, np.ndarray],
    ) -> Comparison:
        breached, remaining, weight = evaluation.labels()
        on_sla = np.isfinite(breached) & np.isfinite(ours[0]) & np.isfinite(theirs[0])
        on_eta = np.isfinite(remaining) & np.isfinite(ours[1]) & np.isfinite(theirs[1])

        def scores(sla: np.ndarray, eta: np.ndarray) -> Scores:
            return Scores(
                auc=auc(breached[on_sla], sla[on_sla], weight[on_sla]) if on_sla.any() else math.nan,
                mae_minutes=mae(remaining[on_eta], eta[on_eta], weight[on_eta]) if on_eta.any() else math.nan,
            )

        rows = (int(on_sla.sum()), int(on_eta.sum()))
        return self._judged(
            pair.model_version, production.model_version, source, holder, rows, scores(*ours), scores(*theirs)
        )

    def _judged(
        self,
        candidate: str,
        production: str,
        source: Source,
        holder: str | None,
        rows: tuple[int, int],
        ours: Scores,
        theirs: Scores,
    ) -> Comparison:
        reasons = []
        if ours.auc < theirs.auc - self.auc_margin:  # False when either is NaN: nothing to compare
            reasons.append(
                f"SLA AUC {ours.auc:.4f} is more than {self.auc_margin:g} below production's {theirs.auc:.4f}"
            )
        if ours.mae_minutes > theirs.mae_minutes * (1 + self.mae_margin):
            reasons.append(
                f"ETA MAE {ours.mae_minutes:.1f} min is more than {self.mae_margin:.0%} above production's "
                f"{theirs.mae_minutes:.1f} min"
            )
        return Comparison(
            candidate=candidate,
            production=production,
            source=source,
            source_model_version=holder,
            sla_rows=rows[0],
            eta_rows=rows[1],
            candidate_scores=ours,
            production_scores=theirs,
            auc_margin=self.auc_margin,
            mae_margin=self.mae_margin,
            reasons=tuple(reasons),
        )

    @staticmethod
    def decide(pair: ModelPair, comparison: Comparison, *, force: bool) -> Decision:
        """`forced` overrides a refusal: asked for now, or recorded on the pair against this very production."""
        if comparison.passed:
            return "passed"
        if force or pair.sla.tags.get(TAG_FORCED_OVER) == comparison.production:
            return "forced"
        return "refused"

    def mark_forced(self, pair: ModelPair, comparison: Comparison) -> None:
        """Before the alias moves: the facades' pollers then serve the pair over this production too."""
        self._client().set_model_version_tag(SLA_MODEL_NAME, pair.sla.version, TAG_FORCED_OVER, comparison.production)

    def refusal(self, comparison: Comparison) -> GateRefused:
        return GateRefused(
            f"model version {comparison.candidate} is refused by the promotion gate: {'; '.join(comparison.reasons)} "
            '(override with "force": true)',
            gate=comparison.figures(),
        )

    def record(self, comparison: Comparison, decision: Decision, *, via: Via) -> None:
        """A run in `osml-gate`; never raises: an identity that may not write there loses the record, not the
        activation (the log line carries the same figures)."""
        fields = {"decision": decision, "via": via, **comparison.figures()}
        if decision == "forced":
            log.warning("promotion gate overridden (force)", extra=fields)
        elif decision == "refused":
            log.error("promotion gate refused a pair", extra=fields)
        else:
            log.info("promotion gate passed a pair", extra=fields)
        try:
            self._log_run(comparison, decision, via)
        except (MlflowException, OSError) as exc:
            log.warning("promotion gate comparison not recorded in MLflow", extra={"error": str(exc), **fields})

    def _log_run(self, comparison: Comparison, decision: Decision, via: Via) -> None:
        client = self._client()
        experiment_id = ensure_experiment(client, self._tracking_uri, GATE_EXPERIMENT_NAME)
        run = client.create_run(
            experiment_id,
            run_name=f"{comparison.candidate} vs {comparison.production}: {decision}",
            tags={TAG_MODEL_VERSION: comparison.candidate, TAG_DECISION: decision, TAG_VIA: via},
        )
        now = int(time.time() * 1000)
        values = {
            "candidate_auc": comparison.candidate_scores.auc,
            "production_auc": comparison.production_scores.auc,
            "candidate_mae_minutes": comparison.candidate_scores.mae_minutes,
            "production_mae_minutes": comparison.production_scores.mae_minutes,
            "sla_rows": comparison.sla_rows,
            "eta_rows": comparison.eta_rows,
        }
        params = {
            "candidate": comparison.candidate,
            "production": comparison.production,
            "source": comparison.source,
            "source_model_version": comparison.source_model_version or "",
            "auc_margin": comparison.auc_margin,
            "mae_margin": comparison.mae_margin,
        }
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id)
