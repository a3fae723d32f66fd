"""Getting many questions answered: batches on the local model, or requests in flight on replicas.

Both dispatchers take an iterator of ``(key, AskRequest)`` and yield ``(key, AskResult or the
exception that question met)`` as answers come in, so one bad question never stops a run. They
read the iterator lazily in the caller's thread (an image is decoded only when its questions
are about to be sent), stop feeding while ``pause`` is set (questions in flight still finish), and
stop when ``cancel`` is set (answers cut short are not yielded).

Replicas: each gets ``concurrency`` worker threads pulling from one shared queue, so a fast
replica takes more questions and vLLM / SGLang batch what is in flight. A replica that goes down
(``ServerUnavailable``: refused, reset, HTTP 502/503) is taken out with one warning and the
question it held goes back in the queue for the others; the run fails only when none is left.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Protocol

from engine.clinkd.errors import ClinKDError
from engine.clinkd.generation import AskRequest, AskResult, GenerationSettings
from engine.clinkd.server import Backend, ServerBackend, ServerError, ServerUnavailable

Answer = AskResult | Exception
Requests = Iterator[tuple[Hashable, AskRequest]]
WarningFn = Callable[[str], None]

POLL_S = 0.05


class Dispatcher(Protocol):
    def answers(
        self, requests: Requests, cancel: threading.Event | None = None, pause: threading.Event | None = None
    ) -> Iterator[tuple[Hashable, Answer]]: ...


def _wait_while_paused(pause: threading.Event | None, cancel: threading.Event | None) -> None:
    while pause is not None and pause.is_set() and not (cancel is not None and cancel.is_set()):
        if cancel is not None:
            cancel.wait(POLL_S)
        else:
            threading.Event().wait(POLL_S)


def _cancelled(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


class LocalDispatcher:
    """Questions in left-padded batches through ``backend.ask_batch`` (a loaded checkpoint).

    A batch that fails (out of memory) is retried one question at a time, so only the question
    that cannot be answered is recorded as failed.
    """

    def __init__(self, backend: Backend, settings: GenerationSettings, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.backend = backend
        self.settings = settings
        self.batch_size = batch_size

    def answers(
        self, requests: Requests, cancel: threading.Event | None = None, pause: threading.Event | None = None
    ) -> Iterator[tuple[Hashable, Answer]]:
        requests = iter(requests)
        while True:
            _wait_while_paused(pause, cancel)
            if _cancelled(cancel):
                return
            batch = list(itertools.islice(requests, self.batch_size))
            if not batch:
                return
            try:
                answered: list[tuple[Hashable, Answer]] = list(
                    zip(
                        [k for k, _ in batch],
                        self.backend.ask_batch([r for _, r in batch], self.settings, cancel=cancel),
                        strict=True,
                    )
                )
            except ClinKDError as error:
                answered = [(batch[0][0], error)] if len(batch) == 1 else list(self._one_by_one(batch, cancel))
            if _cancelled(cancel):
                return
            yield from answered

    def _one_by_one(self, batch: list, cancel: threading.Event | None) -> Iterator[tuple[Hashable, Answer]]:
        for key, request in batch:
            try:
                (result,) = self.backend.ask_batch([request], self.settings, cancel=cancel)
            except ClinKDError as error:
                yield key, error
            else:
                yield key, result


PRIMARY, SECOND = "primary", "second"


class PairedDispatcher:
    """Second opinion: every question answered by two dispatchers (two models), keys as ``(key, slot)``.

    Questions go in chunks: the first model answers a chunk, then the second the same chunk, so
    two local models on one device never decode at once and an image's answers from both arrive
    close together (its agreement is known as soon as the chunk is done).
    """

    def __init__(self, first: Dispatcher, second: Dispatcher, chunk: int = 8) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.sides = ((PRIMARY, first), (SECOND, second))
        self.chunk = chunk

    def answers(
        self, requests: Requests, cancel: threading.Event | None = None, pause: threading.Event | None = None
    ) -> Iterator[tuple[Hashable, Answer]]:
        requests = iter(requests)
        while not _cancelled(cancel):
            chunk = list(itertools.islice(requests, self.chunk))
            if not chunk:
                return
            for slot, dispatcher in self.sides:
                for key, answer in dispatcher.answers(iter(chunk), cancel, pause):
                    yield (key, slot), answer


class ReplicaDispatcher:
    """Questions spread over one or several OpenAI-compatible servers, ``concurrency`` in flight each."""

    def __init__(
        self,
        backends: Sequence[ServerBackend],
        settings: GenerationSettings,
        concurrency: int = 8,
        on_warning: WarningFn | None = None,
    ) -> None:
        if not backends:
            raise ValueError("at least one server is needed")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.backends = list(backends)
        self.settings = settings
        self.concurrency = concurrency
        self.on_warning = on_warning
        self.down: dict[int, str] = {}  # replica index -> why it was taken out

    def _name(self, index: int) -> str:
        return self.backends[index].settings.url.rstrip("/")

    def answers(
        self, requests: Requests, cancel: threading.Event | None = None, pause: threading.Event | None = None
    ) -> Iterator[tuple[Hashable, Answer]]:
        requests = iter(requests)
        todo: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()
        stop = threading.Event()  # set on cancel or when the caller stops listening: aborts requests
        lock = threading.Lock()
        alive = {i: i not in self.down for i in range(len(self.backends))}

        def work(index: int) -> None:
            backend = self.backends[index]
            while True:
                item = todo.get()
                if item is None or stop.is_set():
                    return
                with lock:
                    up = alive[index]
                if not up:
                    todo.put(item)  # someone else's now
                    return
                key, request = item
                try:
                    result: Answer = backend.ask(request, self.settings, cancel=stop)
                except ServerUnavailable as error:
                    with lock:
                        first = alive[index]
                        alive[index] = False
                    done.put(("down", index, error if first else None, item))
                    return
                except Exception as error:  # noqa: BLE001 - a failed question is data for the run
                    done.put(("answer", key, error, None))
                else:
                    done.put(("answer", key, result, None))

        threads = [
            threading.Thread(target=work, args=(i,), name=f"preannotate-{i}-{c}", daemon=True)
            for i in range(len(self.backends))
            if alive[i]
            for c in range(self.concurrency)
        ]
        if not threads:
            raise ServerError("No inference server answers: " + "; ".join(self.down.values()))
        for thread in threads:
            thread.start()
        capacity = 2 * len(threads)
        outstanding, exhausted = 0, False
        try:
            while True:
                if _cancelled(cancel):
                    stop.set()
                    return
                paused = pause is not None and pause.is_set()
                while not exhausted and not paused and outstanding < capacity:
                    item = next(requests, None)
                    if item is None:
                        exhausted = True
                        break
                    todo.put(item)
                    outstanding += 1
                if outstanding == 0:
                    if exhausted:
                        return
                    _wait_while_paused(pause, cancel)
                    continue
                try:
                    kind, what, payload, item = done.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if kind == "down":
                    if payload is not None:
                        self._taken_out(what, payload)
                    # Replicas count as up until their own "down" message is read here, so when several
                    # fail at once each is reported, with its reason, before the run gives up.
                    left = [i for i in alive if i not in self.down]
                    if not left:
                        raise ServerError("No inference server answers any more: " + "; ".join(self.down.values()))
                    todo.put(item)  # the question goes to the replicas still up
                    continue
                outstanding -= 1
                if isinstance(payload, AskResult) and payload.cancelled:
                    continue
                yield what, payload
        finally:
            stop.set()
            for _ in threads:
                todo.put(None)
            for thread in threads:
                thread.join()

    def _taken_out(self, index: int, error: Exception) -> None:
        self.down[index] = f"{self._name(index)}: {error}"
        if self.on_warning is not None:
            left = len(self.backends) - len(self.down)
            self.on_warning(
                f"warning: the inference server {self._name(index)} stopped answering ({error}); it is taken out "
                f"and its questions go to the {left} other server(s)."
            )
