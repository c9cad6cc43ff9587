"""Real local HTTP(S) servers for the tests: each listens on a loopback address in its own threads.

    with LocalServer() as server:                      # an echo server on 127.0.0.1, a free port
        server.route("/flaky", Reply(500), Reply(200, body={"ok": True}))   # in turn, the last repeats
        server.route("/slow", Reply(body="late", delay=5))
        url = server.url("/flaky")
        ...
        server.requests                                # every Request received, in order

A route is a sequence of :class:`Reply` values or a handler ``(Request) -> Reply``; unrouted paths
answer with :func:`echo` (the request as JSON) unless another default handler is given. ``LocalServer(
tls=TlsFiles.issue(tmp_path, "automate.test"))`` serves HTTPS with a certificate from a throwaway trustme
CA whose PEM file (``tls.ca_pem``) is what the client is told to trust. Delays wait on the server's stop
event, so stopping never waits for a slow reply.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LocalServer", "Reply", "Request", "TlsFiles", "echo", "redirect_chain", "sequence"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str | dict | list | None = b""
    headers: Sequence[tuple[str, str]] | dict[str, str] = ()
    delay: float = 0.0  # seconds before answering
    chunked: bool = False  # send the body in 1 KiB chunks, without Content-Length

    def encoded(self) -> tuple[bytes, list[tuple[str, str]]]:
        headers = list(self.headers.items() if isinstance(self.headers, dict) else self.headers)
        names = {k.lower() for k, _ in headers}
        body = self.body
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "application/json"))
        elif isinstance(body, str):
            body = body.encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
        return body or b"", headers


Handler = Callable[[Request], Reply]


def echo(request: Request) -> Reply:
    """The request itself, as JSON: method, path, query, headers, body (text) and json (when it is)."""
    try:
        parsed = request.json
    except ValueError:
        parsed = None
    return Reply(200, {
        "method": request.method, "path": request.path, "query": request.query, "headers": request.headers,
        "body": request.body.decode("utf-8", "replace"), "json": parsed,
    })


def sequence(*replies: Reply) -> Handler:
    """A handler answering with ``replies`` in turn; the last one repeats."""
    lock, left = threading.Lock(), list(replies)

    def handler(_: Request) -> Reply:
        with lock:
            return left.pop(0) if len(left) > 1 else left[0]

    return handler


def redirect_chain(prefix: str, status: int = 302) -> Handler:
    """``<prefix>/<n>`` redirects to ``<prefix>/<n - 1>``; ``<prefix>/0`` answers 200 ``{"hops": "done"}``."""

    def handler(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        if n == 0:
            return Reply(200, {"hops": "done"})
        return Reply(status, headers={"Location": f"{prefix}/{n - 1}"})

    return handler


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate for some names, from a throwaway CA; ``ca_pem`` is the CA's PEM file."""

    server_context: ssl.SSLContext
    ca_pem: Path

    @classmethod
    def issue(cls, directory: Path, *names: str) -> TlsFiles:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(*(names or ("localhost",)))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        path = directory / "test-ca.pem"
        ca.cert_pem.write_to_path(str(path))
        return cls(context, path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LocalServer

    def finish_request(self, request: Any, client_address: Any) -> None:  # in the request's thread
        tls = self.owner.tls
        if tls is not None:
            try:
                request = tls.server_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate (a test of exactly that), or went away
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-reply (a test of the size cap) is not an error here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request = Request(self.command, split.path, parse_qs(split.query, keep_blank_values=True), headers, body)
        reply = owner.record(request)
        if reply.delay and owner.stopping.wait(reply.delay):
            return
        payload, reply_headers = reply.encoded()
        self.send_response(reply.status)
        for name, value in reply_headers:
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 1024):
                piece = payload[i : i + 1024]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


@dataclass
class LocalServer:
    default: Handler = echo
    tls: TlsFiles | None = None
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- routes and records --------------------------------------------------------------------------
    def route(self, path: str, *replies: Reply | Handler) -> LocalServer:
        if len(replies) == 1 and callable(replies[0]):
            self._routes[path] = replies[0]
        else:
            self._routes[path] = sequence(*(r for r in replies if isinstance(r, Reply)))
        return self

    def route_prefix(self, prefix: str, handler: Handler) -> LocalServer:
        self._routes[prefix.rstrip("/") + "/*"] = handler
        return self

    def record(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        handler = self._routes.get(request.path)
        if handler is None:
            handler = next(
                (h for p, h in self._routes.items() if p.endswith("/*") and request.path.startswith(p[:-1])),
                self.default,
            )
        return handler(request)

    def received(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return self._httpd.server_address[1]

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def start(self) -> LocalServer:
        httpd = _Server((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

