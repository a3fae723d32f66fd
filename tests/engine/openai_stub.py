"""A stub OpenAI-compatible chat server on 127.0.0.1 for tests of the server backend.

It speaks the chat-completions wire format (JSON, or Server-Sent Events when the request asks to
stream) and ``GET /v1/models``. Its answers are fixed text chosen by the test (a function of the
request): they stand for what vLLM would send back, so tests check our plumbing and metrics, not a
model. It can also fail on purpose: an HTTP status with an error body, malformed JSON, or a
stream that stalls until the test releases it. Every request body is recorded.

Use as a context manager: it starts on port 0 in a thread and is shut down and joined on exit,
handler threads included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

Answer = Callable[[dict], str]
"""Maps a request body to the answer text."""


@dataclass
class StubBehaviour:
    answer: Answer = lambda body: "ok"
    models: tuple[str, ...] = ("clinkd-7b",)
    status: int = 200  # a non-200 status answers chat requests with an OpenAI error body
    error_message: str = "stub failure"
    malformed: bool = False  # answer chat requests with text that is not JSON
    usage: bool = True  # report token usage
    chunk_size: int = 3  # characters per streamed delta
    stall: threading.Event | None = None  # wait for this event after the first streamed delta, or
    # before a whole (non-streamed) answer
    requests: list[dict] = field(default_factory=list)  # chat request bodies, in arrival order
    authorizations: list[str | None] = field(default_factory=list)  # their Authorization headers


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # chunked streaming

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != "/v1/models":
            self._send(404, json.dumps({"detail": "Not Found"}).encode())
            return
        data = {"object": "list", "data": [{"id": m, "object": "model"} for m in self.server.behaviour.models]}
        self._send(200, json.dumps(data).encode())

    def do_POST(self) -> None:
        behaviour = self.server.behaviour
        if self.path != "/v1/chat/completions":
            self._send(404, json.dumps({"detail": "Not Found"}).encode())
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        behaviour.requests.append(body)
        behaviour.authorizations.append(self.headers.get("Authorization"))
        if body.get("model") not in behaviour.models:
            message = f"The model `{body.get('model')}` does not exist."
            error = {"object": "error", "message": message, "type": "NotFoundError", "code": 404}
            self._send(404, json.dumps(error).encode())
            return
        if behaviour.status != 200:
            error = {"error": {"message": behaviour.error_message, "type": "InternalServerError"}}
            self._send(behaviour.status, json.dumps(error).encode())
            return
        if behaviour.malformed:
            self._send(200, b"<html>this is not json")
            return
        texts = [behaviour.answer(body) for _ in range(body.get("n", 1))]
        usage = {"prompt_tokens": 42, "completion_tokens": sum(len(t.split()) for t in texts)}
        if body.get("stream"):
            self._stream(texts[0], usage if behaviour.usage else None)
            return
        if behaviour.stall is not None:
            behaviour.stall.wait(timeout=10)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        reply = {"id": "chatcmpl-stub", "object": "chat.completion", "choices": choices}
        if behaviour.usage:
            reply["usage"] = usage
        self._send(200, json.dumps(reply).encode())

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _event(self, data: str) -> None:
        self._chunk(f"data: {data}\n\n".encode())

    def _stream(self, text: str, usage: dict | None) -> None:
        behaviour = self.server.behaviour
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        size = behaviour.chunk_size
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        try:
            self._chunk(b": keep-alive\r\n\r\n")  # an SSE comment, not an event
            for i, piece in enumerate(pieces):
                delta = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self._event(json.dumps(delta))
                if i == 0 and behaviour.stall is not None:
                    behaviour.stall.wait(timeout=10)
            final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self._event(json.dumps(final))
            if usage is not None:
                self._event(json.dumps({"choices": [], "usage": usage}))
            self._event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away (cancel): nothing more to send


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def __init__(self, behaviour: StubBehaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour


class OpenAIStub:
    """``with OpenAIStub(StubBehaviour(...)) as stub:`` then talk to ``stub.url``."""

    def __init__(self, behaviour: StubBehaviour | None = None) -> None:
        self.behaviour = behaviour or StubBehaviour()
        self._server = _Server(self.behaviour)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-stub", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.behaviour.stall is not None:
            self.behaviour.stall.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
