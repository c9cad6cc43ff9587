"""A fake OpenAI-compatible ``/chat/completions`` server on 127.0.0.1, for the ``llm`` connector's tests.

    with FakeOpenAI() as fake:
        fake.base_url                  # "http://127.0.0.1:<port>/v1"
        fake.script(500, 429)          # the next two calls answer 500, then 429; later ones succeed
        fake.calls, fake.requests      # how many calls arrived; each one's headers, body and arrival time
        fake.gate.clear()              # hold every call (counted on arrival) until fake.gate.set()

Usage is deterministic and taken from the request: ``prompt_tokens`` is the characters of every message's
content divided by 4 (rounded up) plus 3 per message (a real tokenizer's ballpark, always under the
connector's bound); ``completion_tokens`` is the request's ``max_tokens`` (the reply uses all of it),
unless ``completion_tokens`` is set. The reply's content is ``"echo: <last message's content>"``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI", "Reply", "Request"]


@dataclass
class Reply:
    """A scripted answer: a status, with optional headers, body, usage and delay before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""  # the error message of a non-2xx answer ("$KEY" is replaced by the request's key)
    usage: bool | None = None  # whether the answer reports usage; None: only a 2xx answer does
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when it arrived


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    chars = sum(len(m.get("content", "")) if isinstance(m.get("content"), str) else 0 for m in messages)
    return math.ceil(chars / 4) + 3 * len(messages)


class FakeOpenAI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.completion_tokens: int | None = None
        self.usage = True  # False: no response reports usage
        self.release = threading.Event()  # set on close: a delayed reply stops waiting
        self.gate = threading.Event()  # cleared: every call waits (after being counted) until it is set
        self.gate.set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                fake._answer(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    # -- control ----------------------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self.gate.set()
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever to return: only once it runs
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: int | Reply) -> None:
        """Answer the next calls with these (a status, or a :class:`Reply`), then succeed again."""
        with self._lock:
            self._script.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    # -- serving ----------------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        with self._lock:
            self.requests.append(Request(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body,
                                         time.monotonic()))
            reply = self._script.popleft() if self._script else Reply(usage=self.usage)
        self.gate.wait()
        if reply.delay:
            self.release.wait(reply.delay)
        if not handler.path.endswith("/chat/completions") or not isinstance(body, dict):
            reply = Reply(404 if isinstance(body, dict) else 400, error="not a chat completion request")
        messages = body.get("messages", []) if isinstance(body, dict) else []
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": self.completion_tokens if self.completion_tokens is not None
            else int(body.get("max_tokens", 16)) if isinstance(body, dict) else 0,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if 200 <= reply.status < 300:
            last = messages[-1].get("content", "") if messages else ""
            payload: dict[str, Any] = {
                "id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model", "") + "-2024",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"echo: {last}"}}],
            }
        else:
            key = handler.headers.get("authorization", "").removeprefix("Bearer ")
            payload = {"error": {"message": reply.error.replace("$KEY", key) or f"status {reply.status}",
                                 "type": "fake_error"}}
        if reply.usage or (reply.usage is None and 200 <= reply.status < 300):
            payload["usage"] = usage
        data = json.dumps(payload).encode()
        handler.send_response(reply.status)
        for name, value in {"content-type": "application/json", **reply.headers}.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
