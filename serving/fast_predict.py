"""The happy path of POST /predict as a pure ASGI middleware.

FastAPI's routing, dependency solving and request/response machinery cost ~20 times the work of a prediction
itself (validation, two models, serialisation). This middleware answers a valid, authorised /predict with
exactly what the route would answer — the same `DataPlane.predict` and serialisation — and hands everything
else (a missing or wrong key, an invalid body, no model loaded, any failure) to the FastAPI route, replaying
the body, so errors keep their one implementation and the route stays the documented contract.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.auth import ApiKeys
from serving.payloads import PredictRequest

_JSON_HEADERS = [(b"content-type", b"application/json")]


class PredictFastPath:
    def __init__(self, app: ASGIApp, *, state: State, route: Any) -> None:
        self.app = app
        self.state = state  # the app's state: `plane` appears once the lifespan has started
        self.route = route  # the FastAPI route, so metrics and logs label the request as usual

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        answer = self._answer(scope, body)
        if answer is None:
            await self.app(scope, _replay(body), send)
            return
        content, fields = answer
        scope["route"] = self.route
        scope.setdefault("state", {})["log"] = fields
        headers = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _answer(self, scope: Scope, body: bytes) -> tuple[bytes, dict[str, Any]] | None:
        keys: ApiKeys = self.state.keys
        key = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        plane = getattr(self.state, "plane", None)
        if plane is None or plane.store.current is None or not keys.allows(key, "predict"):
            return None
        try:
            request = PredictRequest.model_validate_json(body)
            result = plane.predict(request)
        except Exception:  # invalid body (ValidationError) or a failure: the route answers with the documented error
            return None
        fields = {"requestId": request.requestId, "orderId": request.orderId, "modelVersion": result["modelVersion"]}
        return orjson.dumps(result), fields


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
