"""ClinKD backends: the local checkpoint, or an OpenAI-compatible server (vLLM, SGLang) serving it.

Why a second backend: a department shares one GPU server, and vLLM / SGLang already serve
Qwen2-VL with continuous batching, so the desktop talks to them instead of distributing anything
itself. Both backends keep one contract, ``ask(request, settings, on_text=, cancel=)`` returning
the same ``AskResult`` (and ``ask_batch`` for evaluation), so the GUI worker, the CLI and the
evaluation runner do not care which one answers.

What crosses the wire: the system prompt, the displayed RGB frame as an inline PNG data URL (the
model sees what the user sees) and the question built by ``build_prompt`` (boxes already in the
served family's dialect and numbers); nothing else, so no patient data leaves the pixels. The
answer is parsed by the same codec as local answers. The family comes from ``ServerSettings.family``
or, on "auto", from the served model's name ("Qwen/Qwen2.5-VL-7B-Instruct" -> Qwen2.5-VL); for
Qwen2.5-VL's absolute pixels the resized size is computed with the processor's ``smart_resize``
from ``min_pixels`` / ``max_pixels``, which must therefore equal the server's.

Only the standard library speaks HTTP: streaming is Server-Sent Events,
and a set cancel event shuts the socket down, which makes the server abort the generation.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from engine.clinkd.conversation import FittedHistory, chat_messages, estimate_tokens, fit_history
from engine.clinkd.errors import ClinKDError
from engine.clinkd.families import FAMILY_CHOICES, Family, family_named, family_of_served_model
from engine.clinkd.generation import (
    AskRequest,
    AskResult,
    Candidate,
    GenerationSettings,
    TextCallback,
    answer_batch,
    answer_fields,
    ask,
    ask_batch,
    rank_candidates,
    request_prompt,
    rgb_image,
)
from engine.clinkd.loader import ClinKDModel, ModelInfo
from engine.clinkd.prompts import Prompt

END_MARKERS = ("<|im_end|>", "<|endoftext|>")
"""End-of-turn tokens a server may leave in the text when it keeps special tokens."""


class ServerError(ClinKDError):
    """The inference server could not be reached, refused the request, or answered garbage."""


class ServerUnavailable(ServerError):
    """The server cannot be reached or its connection broke (refused, reset, unreachable, HTTP 502
    or 503): the replica is down, unlike a question that failed on it (a timeout, a bad request).
    A pool of replicas takes such a replica out and sends its questions to the others."""


class Backend(Protocol):
    """What the GUI worker, the CLI and the evaluation runner need from a ClinKD backend."""

    @property
    def info(self) -> ModelInfo: ...

    def ask(
        self,
        request: AskRequest,
        settings: GenerationSettings = ...,
        *,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> AskResult: ...

    def ask_batch(
        self,
        requests: Sequence[AskRequest],
        settings: GenerationSettings = ...,
        *,
        cancel: threading.Event | None = None,
    ) -> list[AskResult]: ...


@dataclass
class LocalBackend:
    """A checkpoint loaded in this process (``load_model``), behind the backend contract."""

    clinkd: ClinKDModel
    embed: Callable[[Sequence[str]], np.ndarray] | None = None  # SASG embedder; None: the bundled one

    @property
    def info(self) -> ModelInfo:
        return self.clinkd.info

    def ask(
        self,
        request: AskRequest,
        settings: GenerationSettings = GenerationSettings(),
        *,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> AskResult:
        return ask(self.clinkd, request, settings, on_text=on_text, cancel=cancel, embed=self.embed)

    def ask_batch(
        self,
        requests: Sequence[AskRequest],
        settings: GenerationSettings = GenerationSettings(),
        *,
        cancel: threading.Event | None = None,
    ) -> list[AskResult]:
        return ask_batch(self.clinkd, requests, settings, cancel=cancel)


@dataclass(frozen=True)
class ServerSettings:
    """Where the server is and how to talk to it.

    ``min_pixels`` / ``max_pixels`` must equal the server's ``--mm-processor-kwargs``: the server
    resizes images itself, and these values let results report the image token count and place
    Qwen2.5-VL's absolute boxes. ``family`` is a model_type of engine.clinkd.families, or "auto":
    read from the served model's name.
    """

    url: str  # http(s)://host:port, with or without the trailing /v1
    model: str | None = None  # served model name; None: the only model the server lists
    api_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 10.0
    timeout_s: float = 120.0  # longest silence while waiting for the answer (or the next token)
    min_pixels: int = 512 * 512
    max_pixels: int = 1024 * 1024
    concurrency: int = 8  # requests in flight for ask_batch (the server batches them)
    keep_special_tokens: bool = True  # send skip_special_tokens=false so <|box_start|> survives
    family: str = "auto"

    def __post_init__(self) -> None:
        if self.family not in FAMILY_CHOICES:
            raise ValueError(f"the server family must be one of {', '.join(FAMILY_CHOICES)}, got {self.family!r}")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the server URL must look like http://host:8000, got {self.url!r}")
        if self.connect_timeout_s <= 0 or self.timeout_s <= 0 or self.concurrency < 1:
            raise ValueError("timeouts must be > 0 and concurrency >= 1")

    @property
    def base(self) -> str:
        """The OpenAI API root, ending in /v1."""
        path = urlsplit(self.url).path.rstrip("/")
        return path if path.endswith("/v1") else f"{path}/v1"


def png_data_url(image: np.ndarray) -> str:
    """The displayed frame as a base64 PNG data URL (lossless, so the server sees our pixels)."""
    buffer = io.BytesIO()
    rgb_image(image).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _strip_end(text: str) -> str:
    for marker in END_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    return text


def _error_message(body: bytes) -> str:
    """The human part of an error body: OpenAI {"error": {"message"}}, vLLM {"message"}, FastAPI {"detail"}."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])
    return json.dumps(data)[:300]


@dataclass
class _Reply:
    texts: list[str]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunks: int = 0  # streamed content deltas (a token count when the server sends no usage)
    finished: bool = False  # a choice reported its finish_reason
    first_token_at: float | None = None
    cancelled: bool = False


class ServerBackend:
    """ClinKD answers from an OpenAI-compatible chat-completions server. Use ``open_server``.

    Thread-safe: every call opens its own connection, so ``ask_batch`` can keep
    ``settings.concurrency`` requests in flight for the server to batch.
    """

    def __init__(
        self,
        settings: ServerSettings,
        info: ModelInfo,
        embed: Callable[[Sequence[str]], np.ndarray] | None = None,  # SASG embedder; None: the bundled one
    ) -> None:
        self.settings = settings
        self.embed = embed
        self._info = info
        self.family: Family = family_named(info.family)

    @property
    def info(self) -> ModelInfo:
        return self._info

    # ------------------------------------------------------------------ HTTP

    def _describe(self) -> str:
        return self.settings.url.rstrip("/")

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.settings.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=self.settings.connect_timeout_s)
        try:
            conn.connect()
        except ConnectionRefusedError:
            conn.close()
            raise ServerUnavailable(
                f"Cannot connect to the inference server at {self._describe()}: connection refused. "
                "Is vLLM or SGLang running and listening on that host and port?"
            ) from None
        except socket.gaierror as err:
            conn.close()
            raise ServerUnavailable(f"Cannot resolve the server host {parts.hostname!r}: {err.strerror}.") from None
        except (TimeoutError, OSError) as err:
            conn.close()
            reason = "no answer within the connect timeout" if isinstance(err, TimeoutError) else str(err)
            raise ServerUnavailable(
                f"Cannot connect to the inference server at {self._describe()}: {reason}."
            ) from None
        conn.sock.settimeout(self.settings.timeout_s)
        return conn

    def _headers(self, body: bool) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream"}
        if body:
            headers["Content-Type"] = "application/json"
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    def _request(
        self, conn: http.client.HTTPConnection, method: str, path: str, payload: dict | None
    ) -> http.client.HTTPResponse:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        conn.request(method, self.settings.base + path, body=body, headers=self._headers(body is not None))
        return conn.getresponse()

    def _check_status(self, response: http.client.HTTPResponse, path: str) -> None:
        if response.status == 200:
            return
        message = _error_message(response.read())
        where = self._describe()
        if response.status in (401, 403):
            raise ServerError(
                f"The inference server at {where} refused the request (HTTP {response.status}): {message}. "
                "Check the API key (--api-key-env)."
            )
        if response.status == 404 and path == "/chat/completions" and self.settings.model:
            served = self._served_models_quietly()
            if served and self.settings.model not in served:
                raise ServerError(
                    f"The inference server at {where} does not serve model {self.settings.model!r} "
                    f"(it serves: {', '.join(served)}). Pass one of those names with --server-model."
                )
        if response.status == 404:
            raise ServerError(
                f"The server at {where} has no OpenAI endpoint {self.settings.base}{path} (HTTP 404: {message}). "
                "Check the URL: it should point at a vLLM or SGLang OpenAI-compatible server."
            )
        if response.status in (502, 503):  # a proxy or server that is down or restarting
            raise ServerUnavailable(
                f"The inference server at {where} is unavailable (HTTP {response.status}): {message}"
            )
        raise ServerError(f"The inference server at {where} failed (HTTP {response.status}): {message}")

    def _json(self, response: http.client.HTTPResponse) -> dict:
        raw = response.read()
        try:
            data = json.loads(raw)
        except ValueError:
            raise ServerError(
                f"The inference server at {self._describe()} sent a reply that is not JSON: "
                f"{raw.decode('utf-8', 'replace')[:200]!r}"
            ) from None
        if not isinstance(data, dict):
            raise ServerError(f"The inference server at {self._describe()} sent unexpected JSON: {str(data)[:200]}")
        return data

    def _timeout(self) -> ServerError:
        return ServerError(
            f"The inference server at {self._describe()} did not answer within {self.settings.timeout_s:g} s "
            "(raise the timeout for long answers or a busy server)."
        )

    @contextlib.contextmanager
    def _call(self) -> Iterator[http.client.HTTPConnection]:
        """One connection for one call; transport failures become ServerError."""
        conn = self._connect()
        try:
            yield conn
        except TimeoutError:
            raise self._timeout() from None
        except (http.client.HTTPException, OSError) as err:
            raise ServerUnavailable(
                f"The connection to the inference server at {self._describe()} broke: {err!r}"
            ) from None
        finally:
            conn.close()

    def served_models(self, cancel: threading.Event | None = None) -> list[str]:
        """Names the server serves (GET /v1/models), for settings dialogs and error messages.

        A set ``cancel`` shuts the socket down, so a dialog closed mid-test never waits for a
        server that does not answer."""
        with self._call() as conn, _shutdown_on(cancel, conn):
            response = self._request(conn, "GET", "/models", None)
            self._check_status(response, "/models")
            data = self._json(response)
        entries = data.get("data")
        if not isinstance(entries, list):
            raise ServerError(f"The server at {self._describe()} listed no models: {str(data)[:200]}")
        return [str(e.get("id")) for e in entries if isinstance(e, dict) and e.get("id")]

    def _served_models_quietly(self) -> list[str]:
        try:
            return self.served_models()
        except ServerError:
            return []

    # ------------------------------------------------------------------ chat

    def _payload(
        self, prompt: Prompt, history: FittedHistory, request: AskRequest, settings: GenerationSettings, stream: bool
    ) -> dict:
        sample = settings.samples
        image = {"type": "image_url", "image_url": {"url": png_data_url(request.image)}}
        payload: dict = {
            "model": self.settings.model,
            "messages": chat_messages(prompt.question, history.turns, image),  # the same messages as locally
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature if sample else 0.0,
            "top_p": settings.top_p if sample else 1.0,
            "n": settings.best_of,
            "stream": stream,
        }
        if sample:
            payload["top_k"] = -1  # the checkpoint's top_k=1 would silently make sampling greedy
        if settings.repetition_penalty is not None:
            payload["repetition_penalty"] = settings.repetition_penalty
        if self.settings.keep_special_tokens:
            payload["skip_special_tokens"] = False
        if stream:
            payload["stream_options"] = {"include_usage": True}
        return payload

    def _read_stream(
        self, response: http.client.HTTPResponse, on_text: TextCallback | None, cancel: threading.Event | None
    ) -> _Reply:
        reply = _Reply(texts=[""])
        data_lines: list[str] = []
        for raw_line in response:
            line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
            if line or not data_lines:
                continue  # more of this event, another SSE field, a comment, or a blank line without data
            data, data_lines = "\n".join(data_lines), []
            if data == "[DONE]":
                return reply
            self._apply_event(data, reply, on_text)
            if cancel is not None and cancel.is_set():
                reply.cancelled = True
                return reply
        if cancel is not None and cancel.is_set():  # our own shutdown ended the stream
            reply.cancelled = True
            return reply
        if reply.finished:
            return reply
        raise ServerError(f"The stream from the inference server at {self._describe()} ended before the answer did.")

    def _apply_event(self, data: str, reply: _Reply, on_text: TextCallback | None) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            raise ServerError(
                f"The inference server at {self._describe()} streamed an event that is not JSON: {data[:200]!r}"
            ) from None
        if not isinstance(event, dict):
            raise ServerError(f"The inference server at {self._describe()} streamed unexpected data: {data[:200]!r}")
        if event.get("error"):
            raise ServerError(f"The inference server at {self._describe()} failed: {_error_message(data.encode())}")
        usage = event.get("usage")
        if isinstance(usage, dict):
            reply.prompt_tokens = usage.get("prompt_tokens", reply.prompt_tokens)
            reply.completion_tokens = usage.get("completion_tokens", reply.completion_tokens)
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                reply.finished = True
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                if reply.first_token_at is None:
                    reply.first_token_at = time.perf_counter()
                reply.chunks += 1
                reply.texts[0] += content
                if on_text is not None:
                    on_text(content)

    def _read_whole(self, response: http.client.HTTPResponse, n: int) -> _Reply:
        data = self._json(response)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ServerError(
                f"The inference server at {self._describe()} sent no answer (no 'choices'): {str(data)[:200]}"
            )
        texts = [""] * n
        for position, choice in enumerate(choices):
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                raise ServerError(f"The inference server at {self._describe()} sent a malformed choice: {choice!r}")
            index = choice.get("index", position)
            if isinstance(index, int) and 0 <= index < n:
                texts[index] = message.get("content") or ""
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return _Reply(
            texts=texts, prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
        )

    def _exchange(
        self,
        payload: dict,
        stream: bool,
        on_text: TextCallback | None,
        cancel: threading.Event | None,
    ) -> _Reply:
        if cancel is not None and cancel.is_set():
            return _Reply(texts=[""] * payload["n"], cancelled=True)
        with self._call() as conn, _shutdown_on(cancel, conn):
            try:
                response = self._request(conn, "POST", "/chat/completions", payload)
                self._check_status(response, "/chat/completions")
                if stream:
                    return self._read_stream(response, on_text, cancel)
                return self._read_whole(response, payload["n"])
            except (OSError, http.client.HTTPException, ServerError):
                if cancel is not None and cancel.is_set():  # we shut the socket down ourselves
                    return _Reply(texts=[""] * payload["n"], cancelled=True)
                raise

    def _result(
        self,
        request: AskRequest,
        prompt: Prompt,
        raw: str,
        reply: _Reply,
        settings: GenerationSettings,
        started_at: float,
        history: FittedHistory,
        candidates: tuple[Candidate, ...] = (),
    ) -> AskResult:
        finished_at = time.perf_counter()
        generated = reply.completion_tokens if reply.completion_tokens is not None else reply.chunks
        new_tokens = generated // len(reply.texts)  # usage counts every candidate: best-of reports the mean
        height, width = request.image.shape[:2]
        n_image = self.family.image_tokens(width, height, self.settings.min_pixels, self.settings.max_pixels)
        first = reply.first_token_at
        rate = None
        if first is not None and new_tokens > 1 and finished_at > first:
            rate = (new_tokens - 1) / (finished_at - first)
        return AskResult(
            **answer_fields(_strip_end(raw), request, prompt, reply.cancelled),
            model=self._info,
            settings=settings,
            prompt_tokens=int(reply.prompt_tokens or 0),
            image_tokens=n_image,
            new_tokens=int(new_tokens),
            generated_tokens=int(generated),
            time_to_first_token_s=None if first is None else first - started_at,
            tokens_per_second=rate,
            total_s=finished_at - started_at,
            peak_gpu_memory_bytes=None,
            candidates=candidates,
            history_turns=len(history.turns),
            history_dropped=history.dropped,
        )

    def ask(
        self,
        request: AskRequest,
        settings: GenerationSettings = GenerationSettings(),
        *,
        on_text: TextCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> AskResult:
        """Answer one question on the server; streams to ``on_text`` when given (single answers).

        With ``settings.best_of > 1`` (SASG) the server samples N answers in one request and the
        consensus one is kept, scored exactly as locally. A set ``cancel`` event closes the
        connection (the server then stops generating); the result is marked cancelled.
        """
        started_at = time.perf_counter()
        prompt = request_prompt(self.family, request, self.settings.min_pixels, self.settings.max_pixels)
        history = fit_history(request.history, settings.history_tokens, estimate_tokens)
        n = settings.best_of
        stream = on_text is not None and n == 1
        reply = self._exchange(self._payload(prompt, history, request, settings, stream), stream, on_text, cancel)
        if n == 1 or reply.cancelled:
            return self._result(request, prompt, reply.texts[0], reply, settings, started_at, history)
        raws = [_strip_end(t) for t in reply.texts]
        candidates, best = rank_candidates(raws, request, prompt, settings, self.embed)
        return self._result(request, prompt, raws[best], reply, settings, started_at, history, candidates)

    def ask_batch(
        self,
        requests: Sequence[AskRequest],
        settings: GenerationSettings = GenerationSettings(),
        *,
        cancel: threading.Event | None = None,
    ) -> list[AskResult]:
        """Answer several questions with up to ``concurrency`` requests in flight (evaluation)."""
        return answer_batch(requests, settings, lambda batch: self._ask_concurrently(batch, settings, cancel))

    def _ask_concurrently(
        self, requests: Sequence[AskRequest], settings: GenerationSettings, cancel: threading.Event | None
    ) -> list[AskResult]:
        """One request per question, ``concurrency`` in flight for the server to batch; results in order."""
        workers = min(self.settings.concurrency, len(requests))
        if workers == 1:
            return [self.ask(r, settings, cancel=cancel) for r in requests]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clinkd-server") as pool:
            return list(pool.map(lambda r: self.ask(r, settings, cancel=cancel), requests))


@contextlib.contextmanager
def _shutdown_on(cancel: threading.Event | None, conn: http.client.HTTPConnection) -> Iterator[None]:
    """Shut the connection's socket down as soon as ``cancel`` is set, waking a blocked read.

    A watcher thread is the only way to interrupt a read that waits for the server (a long
    prompt, a stalled stream); it lives exactly as long as the call.
    """
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            if cancel.is_set():
                with contextlib.suppress(OSError):
                    if conn.sock is not None:
                        conn.sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="clinkd-server-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def served_models(settings: ServerSettings, cancel: threading.Event | None = None) -> list[str]:
    """The model names a server lists (GET /v1/models), before any backend is opened: what a
    settings dialog's Test button shows. Raises ServerError with a sentence the user can act on."""
    return ServerBackend(settings, _server_info(settings, settings.model or "?")).served_models(cancel)


def open_server(settings: ServerSettings, embed: Callable[[Sequence[str]], np.ndarray] | None = None) -> ServerBackend:
    """Check the server answers and resolve the model name; returns the backend.

    Without ``settings.model`` the server must serve exactly one model. Raises ServerError with a
    sentence the user can act on (connection refused, unknown model, not an OpenAI server).
    """
    probe = ServerBackend(settings, _server_info(settings, settings.model or "?"))
    try:
        served = probe.served_models()
    except ServerError:
        if settings.model is None:
            raise
        served = []  # /v1/models is optional; the first question will tell
    model = settings.model
    if model is None:
        if len(served) != 1:
            listed = ", ".join(served) or "none"
            raise ServerError(
                f"The server at {settings.url} serves {len(served)} models ({listed}); choose one with --server-model."
            )
        model = served[0]
    elif served and model not in served:
        raise ServerError(
            f"The inference server at {settings.url} does not serve model {model!r} "
            f"(it serves: {', '.join(served)}). Pass one of those names with --server-model."
        )
    settings = replace(settings, model=model)
    return ServerBackend(settings, _server_info(settings, model), embed)


def _server_info(settings: ServerSettings, model: str) -> ModelInfo:
    parts = urlsplit(settings.url)
    family = family_of_served_model(model, settings.family)
    return ModelInfo(
        model_id=model,
        path=f"{parts.scheme}://{parts.netloc}{settings.base}",
        dtype="server",
        device=f"server {parts.netloc}",
        quantization=None,
        attn_implementation="server",
        memory_bytes=0,
        parameters=0,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        mcg_rope=None,
        family=family.model_type,
    )
