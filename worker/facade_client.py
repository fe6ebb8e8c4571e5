"""HTTP client of the facade's prediction endpoints, behind a circuit breaker.

One attempt per call: the caller's retry loop (`resilience.retry_transient`) owns the backoff. A 400 means the
request can never succeed (FacadeRejected, dead-lettered by the worker); 401/403 means our key is wrong
(FacadeAuthRejected: no retry can help, the worker stops); a 200 whose body is not a prediction is
FacadeMalformed (retried a few times, then dead-lettered); everything else - 5xx including MODEL_UNAVAILABLE,
timeouts, refused connections - is transient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from worker.resilience import CircuitBreaker, TransientError


@dataclass(frozen=True)
class PredictItem:
    request_id: str
    order_id: str
    features: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"requestId": self.request_id, "orderId": self.order_id, "features": self.features}


@dataclass(frozen=True)
class Prediction:
    model_version: str
    sla_risk: float
    eta_minutes: float
    # the answer's `explanations` ({slaRisk, etaMinutes}: docs/serving.md), when they were asked for
    explanations: dict[str, Any] | None = None


class FacadeRejected(Exception):
    """The facade answered 400: the request is invalid and retrying cannot help."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class FacadeMalformed(Exception):
    """The facade answered 200 with a body that is not the predictions asked for."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class FacadeAuthRejected(Exception):
    """The facade refused our API key (401/403): a configuration error that no retry can mend."""


class FacadeClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        breaker: CircuitBreaker,
        explain: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`explain` = k > 0: every call asks for k explanations (`?explain=k`) and expects them."""
        headers = {"content-type": "application/json"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )
        self._breaker = breaker
        self._explained = explain > 0
        self._params = {"explain": str(explain)} if self._explained else None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def predict(self, item: PredictItem) -> Prediction:
        payload = await self._post("/predict", item.body())
        return parse_prediction(payload, explained=self._explained)

    async def predict_batch(self, items: Sequence[PredictItem]) -> list[Prediction]:
        """Predictions in the order of `items`; FacadeRejected when any item is invalid, FacadeMalformed when any
        answer is not a prediction."""
        payload = await self._post("/predict/batch", {"items": [item.body() for item in items]})
        answers = payload.get("items") if isinstance(payload, dict) else None
        if not isinstance(answers, list) or len(answers) != len(items):
            raise FacadeMalformed(f"/predict/batch answered an unexpected body for {len(items)} items")
        return [parse_prediction(answer, explained=self._explained) for answer in answers]

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        self._breaker.before_call()
        try:
            response = await self._http.post(path, content=orjson.dumps(body), params=self._params)
        except httpx.HTTPError as exc:  # refused, reset, timeout
            self._breaker.record_failure()
            raise TransientError(f"POST {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 200:
            self._breaker.record_success()
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise FacadeMalformed(f"POST {path} answered 200 with invalid JSON: {exc}") from exc
        if response.status_code in (401, 403):
            self._breaker.record_success()  # the facade is up; our key is not accepted
            raise FacadeAuthRejected(f"POST {path}: HTTP {response.status_code}: {_error_detail(response)}")
        if response.status_code in (400, 422):
            # the facade is up and answering; the request itself is bad
            self._breaker.record_success()
            raise FacadeRejected(_error_detail(response))
        self._breaker.record_failure()
        raise TransientError(f"POST {path}: HTTP {response.status_code}: {_error_detail(response)}")


def parse_prediction(answer: Any, *, explained: bool) -> Prediction:
    """A /predict answer (one item of /predict/batch's) as a Prediction; FacadeMalformed if it is not one."""
    try:
        predictions = answer["predictions"]
        prediction = Prediction(
            model_version=str(answer["modelVersion"]),
            sla_risk=float(predictions["slaRisk"]),
            eta_minutes=float(predictions["etaMinutes"]),
            explanations=_explanations(answer) if explained else None,
        )
        if not (math.isfinite(prediction.sla_risk) and math.isfinite(prediction.eta_minutes)):
            raise ValueError("not a finite number")
        return prediction
    except (KeyError, TypeError, ValueError) as exc:
        raise FacadeMalformed(f"facade answered an unexpected prediction body: {answer!r:.200}") from exc


def _explanations(answer: Any) -> dict[str, Any]:
    explanations = answer["explanations"]
    if not isinstance(explanations, dict) or set(explanations) != {"slaRisk", "etaMinutes"}:
        raise ValueError("explanations are not {slaRisk, etaMinutes}")
    return explanations


def _error_detail(response: httpx.Response) -> str:
    text = response.text
    return text if len(text) <= 2000 else text[:2000] + "..."
