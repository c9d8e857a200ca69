"""A small HTTP server in a daemon thread: ``/metrics`` of a registry, and any other routes.

Each stage serves its registry with :func:`serve`; the live page (:mod:`darktrigger.monitoring.live`)
mounts its own routes on the same kind of server. A scrape is never answered with an
error: before the server starts the connection is refused, while it runs and while it
closes every ``/metrics`` request gets 200 (in-flight requests finish before ``close``
returns), and should a collector ever raise, the last good exposition is served again
(with a warning in the log) rather than a 500.

    >>> from prometheus_client import CollectorRegistry
    >>> server = serve(CollectorRegistry(), "127.0.0.1", 0)    # port 0: any free port
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.close()
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from darktrigger.monitoring.errors import MonitoringError

log = logging.getLogger(__name__)


@dataclass
class Response:
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    status: int = 200
    headers: Mapping[str, str] | None = None


#: A route: (the request's headers, its query string) → the response.
Route = Callable[[Mapping[str, str], str], Response]


class MetricsRoute:
    """``/metrics`` of one or more registries, content-negotiated (OpenMetrics or text 0.0.4)."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries
        self._last: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, headers: Mapping[str, str], query: str) -> Response:
        encoder, content_type = choose_encoder(headers.get("Accept", ""))
        try:
            body = b"".join(_strip_eof(encoder(r)) for r in self.registries)
            if content_type.startswith("application/openmetrics-text"):
                body += b"# EOF\n"
        except Exception as exc:  # a collector failed: the last good answer keeps series alive
            with self._lock:
                last = self._last.get(content_type)
            log.warning("metrics: collecting failed (%s: %s); serving the last good exposition",
                        type(exc).__name__, exc)
            body = last[0] if last else (b"# EOF\n" if content_type.startswith("application/openmetrics")
                                         else b"")
            return Response(body, content_type)
        with self._lock:
            self._last[content_type] = (body, content_type)
        return Response(body, content_type)


def _strip_eof(text: bytes) -> bytes:
    return text[:-6] if text.endswith(b"# EOF\n") else text


class Server:
    """A running HTTP server (daemon threads); ``close()`` stops it, in-flight requests done."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Route], name: str = "metrics") -> None:
        self.routes = dict(routes)
        self.name = name
        routes_ref = self.routes

        class Handler(BaseHTTPRequestHandler):
            server_version = "darktrigger"

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                parts = urlsplit(self.path)
                route = routes_ref.get(parts.path)
                if route is None:
                    resp = Response(f"not found: {parts.path}; try {sorted(routes_ref)}\n".encode(), status=404)
                else:
                    try:
                        resp = route(dict(self.headers.items()), parts.query)
                    except Exception as exc:  # a route's bug must not kill the server
                        log.exception("%s: %s failed", name, parts.path)
                        resp = Response(f"error: {type(exc).__name__}: {exc}\n".encode(), status=500)
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", resp.content_type)
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.send_header("Cache-Control", "no-store")
                    for k, v in (resp.headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(resp.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                log.debug("%s: " + format, name, *args)

        server_cls = _V6Server if ":" in host else ThreadingHTTPServer
        try:
            self.httpd = server_cls((host, port), Handler)
        except OSError as exc:
            hint = (f"is another run or program using port {port}? Choose another metrics.base_port "
                    f"in the topology" if exc.errno == errno.EADDRINUSE else "")
            raise MonitoringError(f"{name}: cannot serve on {host}:{port} ({exc.strerror}); {hint}".rstrip("; "))\
                from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"{name}-http", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, release the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _V6Server(ThreadingHTTPServer):
    import socket as _socket

    address_family = _socket.AF_INET6


def serve(registry: CollectorRegistry, host: str, port: int) -> Server:
    """Serve ``registry`` at ``http://host:port/metrics`` in a daemon thread (port 0: any free one)."""
    return Server(host, port, {"/metrics": MetricsRoute(registry)}, name=f"metrics {host}:{port}")


__all__ = ["MetricsRoute", "Response", "Route", "Server", "serve"]
