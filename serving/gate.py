"""The promotion gate: a candidate pair replaces production only when it scores about as well on the same rows.

Both pairs are scored on labelled rows the candidate did not train on when the registry holds some: the
evaluation slice (`osml.evaluation_slice`) of the pair trained on the newest orders, restricted to orders created
after the candidate's `osml.ordersUntil` (source `recent`). Otherwise both are scored on the candidate's own
evaluation slice (source `evaluation`): its test slice at training time, which its served model (refit on every
labelled order) has seen, so this source flatters the candidate. A pair without a slice (trained before slices
were stored) cannot be compared: source `none`, and the gate passes it.

The figures are the training metrics' (`osml.metrics`, per-row weights): SLA ROC AUC on the rows with an SLA label
and ETA MAE in minutes on the rows with a remaining-time label. The candidate is refused when its AUC is lower
than production's by more than `auc_margin` (absolute) or its MAE higher by more than `mae_margin` (relative).
Every comparison is recorded as a run of the MLflow experiment `osml-gate` (docs/operations.md, "Promotion
gate"); a recording that fails (a read-only identity) is logged and changes nothing.
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


def score(pair: ActivePair, rows: list[dict[str, Any]], evaluation: EvaluationSlice) -> Scores:
    breached, remaining, weight = evaluation.labels()
    has_sla, has_eta = np.isfinite(breached), np.isfinite(remaining)
    sla = np.asarray(pair.sla.predict(rows), dtype=float)
    eta = np.asarray(pair.eta.predict(rows), dtype=float)
    return Scores(
        auc=auc(breached[has_sla], sla[has_sla], weight[has_sla]) if has_sla.any() else math.nan,
        mae_minutes=mae(remaining[has_eta], eta[has_eta], weight[has_eta]) if has_eta.any() else math.nan,
    )


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

    def _rows(self, candidate: ModelPair) -> tuple[Source, str | None, EvaluationSlice | None]:
        cutoff = _instant(candidate.orders_until)
        if cutoff is not None:
            newer = [
                p
                for p in registry.list_pairs(self._client())
                if p.model_version != candidate.model_version
                and p.schema_version == candidate.schema_version
                and (_instant(p.orders_until) or -math.inf) > cutoff
            ]
            if newer:
                newest = max(newer, key=lambda p: _instant(p.orders_until) or -math.inf)
                found = self._read_slice(newest)
                recent = found.created_after(cutoff) if found is not None else None
                if recent is not None and len(recent):
                    return "recent", newest.model_version, recent
        own = self._read_slice(candidate)
        if own is not None and len(own):
            return "evaluation", candidate.model_version, own
        return "none", None, None

    def compare(self, pair: ModelPair, candidate: ActivePair, production: ActivePair) -> Comparison:
        source, source_version, evaluation = self._rows(pair)
        if evaluation is None:
            unscored = Scores(math.nan, math.nan)
            return Comparison(
                pair.model_version, production.model_version, source, None, 0, 0, unscored, unscored,
                self.auc_margin, self.mae_margin, (),
            )  # fmt: skip
        rows = evaluation.rows()
        ours, theirs = score(candidate, rows, evaluation), score(production, rows, evaluation)
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
        breached, remaining, _ = evaluation.labels()
        return Comparison(
            candidate=pair.model_version,
            production=production.model_version,
            source=source,
            source_model_version=source_version,
            sla_rows=int(np.isfinite(breached).sum()),
            eta_rows=int(np.isfinite(remaining).sum()),
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
