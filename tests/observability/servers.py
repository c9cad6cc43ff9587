"""Real local servers for the observability tests: an OTLP/HTTP trace receiver that decodes what it gets
with opentelemetry-proto, and a downstream HTTP service that records the headers it was called with."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    service: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    status_message: str
    texts: list[str] = field(default_factory=list)  # every string in the span, for leak checks


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                attributes = _attrs(s.attributes)
                events = [(e.name, _attrs(e.attributes)) for e in s.events]
                span = ReceivedSpan(
                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(), kind=s.kind, service=str(resource.get("service.name")),
                    attributes=attributes, events=events, status_code=s.status.code, status_message=s.status.message,
                )
                span.texts = [s.name, s.status.message, *map(str, attributes.values())]
                for name, ev in events:
                    span.texts += [name, *map(str, ev.values())]
                out.append(span)
    return out


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _OtlpHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        owner: OtlpReceiver = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        spans = decode(body)
        with owner.lock:
            owner.spans.extend(spans)
            owner.requests += 1
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


class OtlpReceiver(_Server):
    """``POST /v1/traces`` (OTLP/HTTP protobuf), decoded into :class:`ReceivedSpan` objects."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        super().__init__(_OtlpHandler)

    def named(self, name: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name == name]

    def all(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


class _DownstreamHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        owner: Downstream = self.server.owner  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with owner.lock:
            owner.calls.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


class Downstream(_Server):
    """A service a workflow calls; ``calls`` holds each request's headers (lower-case names)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, str]] = []
        super().__init__(_DownstreamHandler)


def servers() -> Iterator[tuple[OtlpReceiver, Downstream]]:
    receiver, downstream = OtlpReceiver(), Downstream()
    try:
        yield receiver, downstream
    finally:
        receiver.close()
        downstream.close()
