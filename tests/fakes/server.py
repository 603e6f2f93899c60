"""A small threaded HTTP server with a route table and scripted faults, the base of the stand-ins.

Each stand-in (OpenAI, Vertex, Anthropic, Bedrock runtime) registers its routes on a
:class:`FakeHTTPServer`; the real SDKs talk to it over HTTP on 127.0.0.1. Faults are scripted per
route name and consumed in order, so a test says exactly what the next requests see::

    server.inject("jobs.create", Fault(429, retry_after="0"), Fault(429), Fault(503))
    server.inject("chat.create", Fault(drop=True))      # close the connection without an answer

Every request is logged (``server.log``) as ``(route name, method, path, status)``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """One scripted failure: an HTTP status (with the provider's error body) or a dropped connection."""

    status: int = 500
    retry_after: str | None = None  # value of the Retry-After header, as the server would send it
    message: str = ""
    drop: bool = False  # close the socket without writing a response
    after: bool = False  # do the work first, then answer with the error (a lost response)


Handler = Callable[[Request], Response]
ErrorBody = Callable[[int, str], Any]


def _default_error(status: int, message: str) -> Any:
    return {"error": {"code": status, "message": message}}


class FakeHTTPServer:
    """Route table + fault queues on a ThreadingHTTPServer (started on a free port).

    Args:
        error_body: builds the provider's error JSON for a status and message.
        auth: a function that checks the request's headers; returns an error message or None.
    """

    def __init__(self, *, error_body: ErrorBody = _default_error, auth: Callable[[Request], str | None] | None = None):
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.error_body = error_body
        self.auth = auth
        self.log: list[tuple[str, str, str, int]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------
    def route(self, method: str, pattern: str, name: str) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method`` and a path regex with named groups."""

        def deco(fn: Handler) -> Handler:
            self._routes.append((method, re.compile(f"^{pattern}$"), name, fn))
            return fn

        return deco

    def inject(self, name: str, *faults: Fault) -> None:
        """Queue faults for the next requests to route ``name`` (consumed one per request)."""
        with self._lock:
            self._faults[name].extend(faults)

    def pending_faults(self, name: str) -> int:
        with self._lock:
            return len(self._faults[name])

    def calls(self, name: str) -> int:
        """How many requests route ``name`` received (faulted ones included)."""
        with self._lock:
            return sum(1 for n, *_ in self.log if n == name)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHTTPServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body in separate writes: no 40 ms delayed ACK

            def log_message(self, *args):  # quiet
                pass

            def _serve(self, method: str) -> None:
                server._dispatch(self, method)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def do_DELETE(self):
                self._serve("DELETE")

            def do_PATCH(self):
                self._serve("PATCH")

        class _Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that went away is not news
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = unquote(parts.path)
        req = Request(method, path, dict(parse_qsl(parts.query, keep_blank_values=True)), h.headers, body)
        found = next(((n, f, mt) for m, rx, n, f in self._routes if m == method and (mt := rx.match(path))), None)
        if found is None:
            self._write(h, "-", req, Response(404, self.error_body(404, f"no route for {method} {path}")))
            return
        name, fn, match = found
        req.params = match.groupdict()
        with self._lock:
            fault = self._faults[name].popleft() if self._faults[name] else None
        if fault is not None and fault.after:
            try:
                fn(req)
            except Exception:  # noqa: S110 - the fault's answer replaces whatever happened
                pass
        if fault is not None:
            if fault.drop:
                with self._lock:
                    self.log.append((name, method, path, 0))
                h.close_connection = True
                h.connection.shutdown(2)
                return
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            msg = fault.message or f"injected fault {fault.status}"
            self._write(h, name, req, Response(fault.status, self.error_body(fault.status, msg), headers))
            return
        if self.auth is not None:
            problem = self.auth(req)
            if problem:
                self._write(h, name, req, Response(401, self.error_body(401, problem)))
                return
        try:
            resp = fn(req)
        except Exception as exc:  # a bug in the fake: answer 500 with the reason, keep serving
            resp = Response(500, self.error_body(500, f"fake server error: {type(exc).__name__}: {exc}"))
        self._write(h, name, req, resp)

    def _write(self, h: BaseHTTPRequestHandler, name: str, req: Request, resp: Response) -> None:
        with self._lock:
            self.log.append((name, req.method, req.path, resp.status))
        if isinstance(resp.body, bytes):
            data, ctype = resp.body, resp.headers.get("Content-Type", "application/octet-stream")
        else:
            data, ctype = json.dumps(resp.body if resp.body is not None else {}).encode(), "application/json"
        h.send_response(resp.status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in resp.headers.items():
            if k.lower() != "content-type":
                h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
