"""A stand-in for the Anthropic Messages API (``POST /v1/messages``) the ``anthropic`` SDK speaks.

Auth is the ``x-api-key`` header (or ``Authorization: Bearer``, as SDK 2.x sends it); errors are ``{"type": "error", "error": {"type", "message"}}``.
The "model" learns in context: it answers the last user turn from a :class:`Memory` of the
user/assistant exemplar pairs earlier in the same request, so a few-shot adapter with good
exemplars scores well and one without exemplars does not.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.fakes.learner import MALFORMED, Memory
from tests.fakes.server import FakeHTTPServer, Request, Response

API_KEY = "test-anthropic-key-0123456789"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def _message(n: int, model: str, text: str, messages: list) -> dict[str, Any]:
    return {"id": f"msg_{n:010d}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": sum(len(_text(m["content"]).split()) for m in messages),
                      "output_tokens": len(text.split())}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


class FakeAnthropic:
    """The server; ``url`` is the SDK's ``base_url`` (the SDK adds ``/v1/messages``)."""

    def __init__(self, api_key: str = API_KEY):
        self.api_key = api_key
        self.http = FakeHTTPServer(error_body=_error, auth=self._auth)
        self.malformed_every = 0
        self.answered = 0
        self.requests: list[dict[str, Any]] = []
        self.judges: dict[str, Any] = {}  # model -> prefer(conversation, reply_a, reply_b): answers as a judge
        self.judged: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._routes()

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> FakeAnthropic:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def add_judge(self, model: str, prefer) -> str:
        """Base model ``model`` answers judge requests with ``prefer(conversation, reply_a, reply_b)``."""
        self.judges[model] = prefer
        return model

    def _auth(self, req: Request) -> str | None:
        # the API takes the key as x-api-key; SDK 2.x sends it as a bearer token
        if self.api_key not in (req.headers.get("x-api-key"), (req.headers.get("Authorization") or "")[7:]):
            return "invalid x-api-key"
        if not req.headers.get("anthropic-version"):
            return "anthropic-version header is required"
        return None

    def _routes(self) -> None:
        @self.http.route("POST", "/v1/messages", "messages.create")
        def create(req: Request) -> Response:
            b = req.json()
            model, messages = b.get("model", ""), b.get("messages") or []
            if not model.startswith("claude-"):
                return Response(404, _error(404, f"model: {model}"))
            if not b.get("max_tokens"):
                return Response(400, _error(400, "max_tokens: Field required"))
            if not messages or messages[-1].get("role") != "user":
                return Response(400, _error(400, "messages: the last message must have role 'user'"))
            roles = [m.get("role") for m in messages]
            if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
                return Response(400, _error(400, "messages: roles must alternate between 'user' and 'assistant'"))
            with self._lock:
                self.requests.append(b)
                self.answered += 1
                n = self.answered
            if model in self.judges:
                from tests.fakes.chat_data import judge_parts

                seen = judge_parts(_text(messages[-1]["content"]))
                self.judged.append(seen)
                return Response(200, _message(n, model, self.judges[model](seen["conversation"], seen["reply_a"],
                                                                           seen["reply_b"]), messages))
            pairs = [
                (_text(messages[i]["content"]), _text(messages[i + 1]["content"]))
                for i in range(len(messages) - 1)
                if messages[i]["role"] == "user" and messages[i + 1]["role"] == "assistant"
            ]
            if self.malformed_every and n % self.malformed_every == 0:
                text = MALFORMED[n % len(MALFORMED)]
            else:
                text = Memory(pairs).answer(_text(messages[-1]["content"]))
            return Response(
                200,
                {
                    "id": f"msg_{n:010d}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": sum(len(_text(m["content"]).split()) for m in messages),
                              "output_tokens": len(text.split())},
                },
            )
