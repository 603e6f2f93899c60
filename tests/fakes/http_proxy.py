"""A reverse HTTP proxy in front of a stand-in server, to make it fail the way a real service fails.

The real clients talk to the proxy's URL; the proxy forwards every request to the target (bqemulator)
and can be switched, while the clients keep running:

- ``proxy.fail(503)``: answer every request with that status and a Google error body (a 5xx outage);
- ``proxy.down()`` / ``proxy.up()``: close the listening socket and every open connection (connection
  refused, as when the service is stopped) and later listen again on the same port (it restarted);
- ``proxy.ok()``: forward again.

Only loopback addresses are used.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class FlakyProxy:
    """Forward to ``target`` (``http://127.0.0.1:PORT``) unless told to fail or to be down."""

    def __init__(self, target: str):
        parts = urlsplit(target)
        self.target_host, self.target_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mode = "ok"
        self.status = 503
        self.forwarded = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._port = 0
        self._open: set[socket.socket] = set()

    # -- controls ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> FlakyProxy:
        self._listen()
        return self

    def ok(self) -> None:
        self.mode = "ok"

    def fail(self, status: int = 503) -> None:
        self.status, self.mode = status, "fail"

    def down(self) -> None:
        """Stop listening and cut every open connection: clients see refused / reset connections."""
        self.mode = "down"
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        with self._lock:
            conns, self._open = list(self._open), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def up(self) -> None:
        """Listen again on the same port and forward."""
        self.mode = "ok"
        if self._httpd is None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._listen(self._port)
                    return
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        self.down()

    # -- serving -------------------------------------------------------------------------------------
    def _listen(self, port: int = 0) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with proxy._lock:
                    proxy._open.add(self.connection)

            def finish(self):
                with proxy._lock:
                    proxy._open.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.mode == "fail":
                    with proxy._lock:
                        proxy.refused += 1
                    status = proxy.status
                    data = json.dumps({"error": {"code": status, "message": f"injected {status} by the proxy",
                                                 "status": "UNAVAILABLE" if status == 503 else "INTERNAL"}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection(proxy.target_host, proxy.target_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy._lock:
                    proxy.forwarded += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):  # cut connections are the point
                pass

        httpd = Server(("127.0.0.1", port), Handler)
        self._port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._httpd = httpd
