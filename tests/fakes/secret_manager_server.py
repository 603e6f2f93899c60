"""A stand-in for Secret Manager's REST API: ``GET /v1/projects/{p}/secrets/{s}/versions/{v}:access``.

Answers ``{"name", "payload": {"data": <base64>, "dataCrc32c": "<int64 as string>"}}`` as the real
service does; ``latest`` resolves to the highest version. Requires a bearer token.
"""

from __future__ import annotations

import base64

from tests.fakes.server import FakeHTTPServer, Request, Response
from tests.fakes.vertex_server import STATUS


def _error(status: int, message: str) -> dict:
    return {"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}}


class FakeSecretManager:
    def __init__(self) -> None:
        self.http = FakeHTTPServer(error_body=_error, auth=self._auth)
        self.secrets: dict[str, list[bytes]] = {}  # projects/p/secrets/s -> versions (1-based)
        self.corrupt = False  # answer with a checksum that does not match the data

        @self.http.route("GET", "/v1/(?P<secret>projects/[^/]+/secrets/[^/]+)/versions/(?P<v>[^/:]+):access",
                         "versions.access")
        def access(req: Request) -> Response:
            import google_crc32c

            versions = self.secrets.get(req.params["secret"])
            if not versions:
                return Response(404, _error(404, f"Secret [{req.params['secret']}] not found or has no versions."))
            v = len(versions) if req.params["v"] == "latest" else int(req.params["v"])
            if not 1 <= v <= len(versions):
                return Response(404, _error(404, f"Secret Version [{req.params['secret']}/versions/{v}] not found."))
            data = versions[v - 1]
            crc = google_crc32c.value(data) + (1 if self.corrupt else 0)
            return Response(200, {"name": f"{req.params['secret']}/versions/{v}",
                                  "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)}})

    def _auth(self, req: Request) -> str | None:
        if not (req.headers.get("Authorization") or "").startswith("Bearer "):
            return "Request is missing required authentication credential."
        return None

    def add(self, name: str, value: str) -> None:
        self.secrets.setdefault(name, []).append(value.encode())

    @property
    def url(self) -> str:
        return self.http.url

    def start(self) -> FakeSecretManager:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()
