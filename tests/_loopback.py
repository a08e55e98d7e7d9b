"""A loopback HTTP(S) server for the download tests of every dataset loader."""

from __future__ import annotations

import http.server
import ssl
import threading

import pytest


class LoopbackServer:
    """Serves ``content`` with ``status`` at every path on 127.0.0.1 or, when ``routes`` is
    given, ``routes[path]`` (200) and 404 elsewhere; HTTPS with a TLS context. ``paths``
    lists the GET requests in order, ``requests`` counts them; ``url`` is ``<base>/<name>``."""

    def __init__(
        self,
        name: str = "file",
        tls: ssl.SSLContext | None = None,
        routes: dict[str, bytes] | None = None,
    ) -> None:
        self.content, self.status, self.paths = b"", 200, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.paths.append(self.path)
                if routes is None:
                    status, body = outer.status, outer.content
                else:
                    body = routes.get(self.path)
                    status, body = (200, body) if body is not None else (404, b"")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"{self.base}/{name}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def requests(self) -> int:
        return len(self.paths)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def bypass_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to 127.0.0.1 go straight to the server, whatever proxy the machine sets."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
