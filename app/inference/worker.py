"""The one long-lived inference thread: owns the models, runs one job at a time, never blocks the GUI.

(A second opinion is one job whose two answers generate together: SecondOpinionJob.)

Jobs go in through a queued signal and run in submission order on the worker's QThread; what
comes back (state, text chunks, progress, results, errors) is plain data on queued signals. Each
job carries its own ``threading.Event``: the GUI sets it to cancel, the engine checks it between
tokens (ClinKD) or batches (KPL). Models load on first use and stay loaded until ``unload``.
Torch is reached only through the engine, imported inside this thread on first use, so the window
opens without paying for it; the engine enters ``torch.inference_mode`` in this thread.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from app.inference.segmenting import SegmenterHolder, SegmentJob, prefetch_one, prefetches, run_segment_job
from app.inference.settings import AssistantSettings
from engine.imaging import Window

THREAD_STOP_TIMEOUT_MS = 10_000
STEPS_EMIT_S = 0.05  # an answer's token count goes to the status bar at most this often (_StepThrottle)


@dataclass(frozen=True, eq=False)
class AskJob:
    """A question about the frame the user sees (its displayed RGB pixels)."""

    image: np.ndarray  # (H, W, 3) uint8, render_rgb of the frame in the current window
    question: str
    task: str  # engine.clinkd.Task value: "free", "vg", "roc", "rc", "mia"
    box: tuple[float, float, float, float] | None
    image_key: str
    frame: int
    window: Window | None
    settings: AssistantSettings
    history: tuple = ()  # engine.clinkd.PriorTurn: the earlier turns of this conversation
    model: str = "primary"  # which configured model answers: "primary" or "second" (the second opinion)


@dataclass(frozen=True, eq=False)
class SecondOpinionJob:
    """One question to both configured models, the two answers streaming at the same time.

    Why one job: the worker owns both models, and a second opinion is read side by side, so the
    columns must fill together rather than one after the other. The first answer (``first``, model
    "primary") is generated on the worker thread, the second (``second``) on a helper thread the
    job starts and joins before it ends; torch and the HTTP client release the interpreter lock,
    so the two decode together. Each answer streams, finishes, fails or is cancelled under its own
    job id (the ticket's id and ``second_id``): that id tells the columns apart. One cancel event
    stops both.
    """

    first: AskJob
    second: AskJob
    second_id: int


@dataclass(frozen=True)
class ClassifyJob:
    """KPL over a pool of files (a folder, a series) or one image."""

    paths: tuple[str, ...]
    settings: AssistantSettings
    # pictures as displayed (key, title, RGB), e.g. a reformatted plane; used instead of paths
    pictures: tuple[tuple[str, str, np.ndarray], ...] = ()


@dataclass(frozen=True, eq=False)
class PreannotateJob:
    """A pre-annotation run over open images (engine.preannotate): plain data in, outcomes out.

    ``images`` holds (image key, ImageRef, existing boxes) per image; the worker re-opens the
    files itself, so no stack is shared with the GUI thread. ``pause`` holds the queue (questions
    in flight finish); the ticket's cancel event stops the run and keeps what is done.
    """

    spec: object  # engine.preannotate.PreannotateSpec
    images: tuple  # ((image key, ImageRef, (Box, ...)), ...)
    run_id: str
    settings: AssistantSettings
    pause: threading.Event = field(default_factory=threading.Event)
    batch_size: int = 4  # local questions per batch
    concurrency: int = 8  # requests in flight on a server
    second_opinion: bool = False  # the second model answers every question too (vg)


@dataclass(frozen=True)
class UnloadJob:
    """Free the models (and GPU memory) now."""


class _StepThrottle:
    """One answer's decoding-step count, sent on at most every ``interval`` seconds (and at the end).

    Why: every queued signal wakes the GUI thread and makes it take the interpreter lock from the
    generating thread(s); a count per token (hundreds a second, twice that in a second opinion)
    only feeds the status bar's tokens/s. Text is not held back: it comes a word at a time, and a
    word held while the model stalls would go unseen. An interval of 0 sends every step (tests that
    follow tokens).
    """

    def __init__(self, send, interval: float) -> None:
        self.send, self.interval = send, interval
        self.steps = self.sent = 0
        self.last = 0.0

    def add(self, steps: int) -> None:
        self.steps = steps
        if time.perf_counter() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        self.last = time.perf_counter()
        if self.steps != self.sent:
            self.sent = self.steps
            self.send(self.steps)


@dataclass
class _Ticket:
    job: object
    cancel: threading.Event = field(default_factory=threading.Event)


class _Worker(QObject):
    """Lives in the inference thread; its slot runs the jobs one after another."""

    state = Signal(str, str)  # "not configured" | "loading" | "ready" | "busy" | "error", detail
    started = Signal(int)
    partial_text = Signal(int, str)
    steps = Signal(int, int, float)  # job id, decoding steps so far, seconds since the job started
    progress = Signal(int, str, int, int)  # job id, stage, done, total
    result = Signal(int, object)
    error = Signal(int, str)
    cancelled = Signal(int)
    finished = Signal(int)
    image_done = Signal(int, object)  # job id, engine.preannotate.ImageOutcome
    run_progress = Signal(int, object)  # job id, engine.preannotate.RunProgress
    warning = Signal(int, str)  # job id, something the user should know (a replica went down)
    prefetched = Signal(str)  # the key of a neighbour's embedding computed while idle
    _idle = Signal()  # queued to itself: the next prefetch step runs after every job already queued

    def __init__(self) -> None:
        super().__init__()
        self._clinkd: dict[str, object] = {}  # model slot ("primary", "second") -> loaded model or server
        self._clinkd_key: dict[str, object] = {}
        self._clip = None
        self._clip_key = None
        self._segmenter = SegmenterHolder()
        self._prefetch: list = []
        self.waiting = 0  # jobs submitted and not yet started (the service counts up, run() down)
        self.waiting_lock = threading.Lock()
        self.stream_interval_s = STEPS_EMIT_S
        self._idle.connect(self._prefetch_step, Qt.ConnectionType.QueuedConnection)

    def drop_prefetch(self) -> None:
        """Forget the idle work (cancel all, a new image): called from either thread, a list swap."""
        self._prefetch = []

    @Slot()
    def _prefetch_step(self) -> None:
        """One neighbour's embedding, only when no job waits; a job queued meanwhile goes first and
        the step comes back after it. One embedding is the most a user's job ever waits for."""
        if not self._prefetch:
            return
        with self.waiting_lock:
            busy = self.waiting > 0
        if busy:
            self._idle.emit()  # behind the waiting job
            return
        item, self._prefetch = self._prefetch[0], self._prefetch[1:]
        if prefetch_one(self._segmenter, item):
            self.prefetched.emit(item.key)
        if self._prefetch:
            self._idle.emit()

    @Slot(int, object)
    def run(self, job_id: int, ticket: _Ticket) -> None:
        job = ticket.job
        with self.waiting_lock:
            self.waiting -= 1
        if ticket.cancel.is_set():
            for answer_id in (job.second_id, job_id) if isinstance(job, SecondOpinionJob) else (job_id,):
                self.cancelled.emit(answer_id)
                self.finished.emit(answer_id)
            return
        self.started.emit(job_id)
        try:
            if isinstance(job, AskJob):
                self._ask(job_id, job, ticket.cancel)
            elif isinstance(job, SecondOpinionJob):
                self._second_opinion(job_id, job, ticket.cancel)
            elif isinstance(job, ClassifyJob):
                self._classify(job_id, job, ticket.cancel)
            elif isinstance(job, PreannotateJob):
                self._preannotate(job_id, job, ticket.cancel)
            elif isinstance(job, SegmentJob):
                self._segment(job_id, job, ticket.cancel)
            elif isinstance(job, UnloadJob):
                self._unload()
        except Exception as error:  # noqa: BLE001 - every failure must reach the panel, the thread lives on
            self._fail(job_id, error)
        finally:
            self.finished.emit(job_id)

    # ----- ClinKD
    def _ask(self, job_id: int, job: AskJob, cancel: threading.Event) -> None:
        backend = self._backend(job)
        if cancel.is_set():
            self.cancelled.emit(job_id)
            return
        self.state.emit("busy", _device_text(backend.info))
        self._stream(job_id, job, backend, cancel)
        self.state.emit("ready", _device_text(backend.info))

    def _second_opinion(self, job_id: int, job: SecondOpinionJob, cancel: threading.Event) -> None:
        """Both answers at once: the models load (or connect) here one after the other, then the
        second generates on a helper thread while the first generates here; the helper is joined
        before the job ends, whatever happens. A model that fails shows its error in its own
        column and the other answer goes on."""
        answers = []
        for answer_id, ask_job in ((job_id, job.first), (job.second_id, job.second)):
            try:
                answers.append((answer_id, ask_job, self._backend(ask_job)))
            except Exception as error:  # noqa: BLE001 - one model's failure is its column's, not the pair's
                self._fail(answer_id, error)
        try:
            if cancel.is_set():
                for answer_id, _job, _backend in answers:
                    self.cancelled.emit(answer_id)
                return
            if answers:
                self.state.emit("busy", " | ".join(_device_text(backend.info) for _id, _job, backend in answers))
            helper = None
            if len(answers) == 2:
                helper = threading.Thread(
                    target=self._stream_guarded, args=(*answers[1], cancel), name="second-opinion", daemon=True
                )
                helper.start()
            try:
                if answers:
                    self._stream_guarded(*answers[0], cancel)
            finally:
                if helper is not None:
                    helper.join()
            if answers:
                self.state.emit("ready", " | ".join(_device_text(backend.info) for _id, _job, backend in answers))
        finally:
            self.finished.emit(job.second_id)  # the first id's comes from run(), after this

    def _stream_guarded(self, job_id: int, job: AskJob, backend, cancel: threading.Event) -> None:
        """``_stream`` whose failure is reported under ``job_id`` (it may run on the helper thread)."""
        try:
            self._stream(job_id, job, backend, cancel)
        except Exception as error:  # noqa: BLE001 - the error goes to this answer's column, the other lives on
            self._fail(job_id, error)

    def _fail(self, job_id: int, error: Exception) -> None:
        self.state.emit("error", _message(error))
        self.error.emit(job_id, _message(error))
        traceback.print_exc()

    def _backend(self, job: AskJob):
        """The loaded model or connected server that answers ``job`` (its model slot)."""
        where = job.settings.for_model(job.model)
        if where.server_url:
            return self._open_server(where, job.model)
        return self._load_clinkd(where, job.model)

    def _stream(self, job_id: int, job: AskJob, backend, cancel: threading.Event) -> None:
        """One answer, its text and decoding steps streamed under ``job_id``, then its result (or
        cancellation). Runs on the worker thread, or on a second opinion's helper thread: it touches
        nothing of the worker's but its signals, which Qt queues to the GUI from either thread."""
        from engine.clinkd import AskRequest, GenerationSettings, Task, ask

        request = AskRequest(job.image, job.question, Task(job.task), job.box, history=tuple(job.history))
        settings = GenerationSettings(
            max_new_tokens=job.settings.max_new_tokens,
            best_of=job.settings.best_of,
            history_tokens=job.settings.history_tokens,
        )
        began = time.perf_counter()
        steps = _StepThrottle(lambda n: self.steps.emit(job_id, n, time.perf_counter() - began), self.stream_interval_s)

        def on_text(text: str) -> None:
            self.partial_text.emit(job_id, text)

        if backend.info.device.startswith("server"):
            chunks = itertools.count(1)

            def on_chunk(text: str) -> None:  # a server streams about one token per event
                on_text(text)
                steps.add(next(chunks))

            result = backend.ask(request, settings, on_text=on_chunk, cancel=cancel)
        else:
            result = ask(backend, request, settings, on_text=on_text, on_step=steps.add, cancel=cancel)
        steps.flush()
        if result.cancelled:
            self.cancelled.emit(job_id)
        else:
            self.result.emit(job_id, result)

    def _open_server(self, settings: AssistantSettings, slot: str = "primary"):
        """The server of model ``slot`` (settings already ``for_model(slot)``), connected once."""
        from engine.clinkd import ServerSettings, open_server

        key = ("server", settings.server_url, settings.server_model, settings.server_family)
        if slot not in self._clinkd or self._clinkd_key.get(slot) != key:
            self._clinkd.pop(slot, None)
            self.state.emit("loading", f"connecting to {settings.server_url}")
            self._clinkd[slot] = open_server(
                ServerSettings(
                    settings.server_url,
                    settings.server_model or None,
                    max_pixels=settings.max_pixels,
                    min_pixels=min(512 * 512, settings.max_pixels),
                    family=settings.server_family,
                )
            )
            self._clinkd_key[slot] = key
            _import_run_modules()
        return self._clinkd[slot]

    def _load_clinkd(self, settings: AssistantSettings, slot: str = "primary"):
        """The local model of ``slot`` (settings already ``for_model(slot)``), loaded on first use."""
        from engine.clinkd import LoadSettings, load_model, read_checkpoint_config

        if not settings.clinkd_dir:
            raise RuntimeError(
                "No ClinKD / Qwen2-VL checkpoint folder or server is configured (Assistant > Settings)."
                if slot == "primary"
                else "No second-opinion model is configured (Assistant > Settings > Second opinion)."
            )
        load = LoadSettings(
            model_dir=settings.clinkd_dir,
            dtype=None if settings.dtype == "auto" else settings.dtype,
            device=settings.device,
            max_pixels=settings.max_pixels,
            min_pixels=min(512 * 512, settings.max_pixels),
            mcg_rope={"auto": None, "on": True, "off": False}[settings.mcg_rope],
        )
        if slot not in self._clinkd or self._clinkd_key.get(slot) != load:
            read_checkpoint_config(load.model_dir)  # a damaged folder is refused before the loaded model goes
            self._clinkd.pop(slot, None)
            self.state.emit("loading", f"ClinKD from {settings.clinkd_dir}")
            self._clinkd[slot] = load_model(load)
            self._clinkd_key[slot] = load
            _import_run_modules()
        model = self._clinkd[slot]
        self.state.emit("ready", _device_text(model.info))
        return model

    # ----- segmentation
    def _segment(self, job_id: int, job: SegmentJob, cancel: threading.Event) -> None:
        outcome = run_segment_job(
            self._segmenter,
            job,
            cancel,
            on_state=self.state.emit,
            on_progress=lambda done, total: self.progress.emit(job_id, "segment", done, total),
        )
        if outcome.cancelled and not outcome.masks:
            self.cancelled.emit(job_id)
        else:
            self.result.emit(job_id, outcome)
        self._prefetch = prefetches(job)  # a new prompt's neighbours replace the last one's
        if self._prefetch:
            self._idle.emit()

    # ----- pre-annotation
    def _preannotate(self, job_id: int, job: PreannotateJob, cancel: threading.Event) -> None:
        from engine.imaging import open_paths
        from engine.preannotate import FAILED, ImageOutcome, ImageWork, PreTask

        spec = job.spec
        began = time.perf_counter()
        paths = list(dict.fromkeys(p for _key, ref, _boxes in job.images for p in ref.paths))
        stacks = {stack.key: stack for stack in open_paths(paths).stacks}
        works = []
        for key, ref, boxes in job.images:
            if key in stacks:
                works.append(ImageWork(stacks[key], ref, tuple(boxes)))
            else:
                self.image_done.emit(job_id, ImageOutcome(ref.image_id, ref.title, FAILED, "cannot be opened any more"))

        def on_image(outcome) -> None:
            self.image_done.emit(job_id, outcome)

        def progress(report) -> None:
            self.run_progress.emit(job_id, report)
            if report.new_tokens:
                self.steps.emit(job_id, report.new_tokens, time.perf_counter() - began)

        if spec.task is PreTask.KPL:
            from engine.kpl import Cancelled, FeatureCache, KplSettings
            from engine.preannotate import run_kpl_labels

            clip = self._load_clip(job.settings)
            try:
                stats = run_kpl_labels(
                    works,
                    spec,
                    clip,
                    KplSettings(k=job.settings.kpl_k, method=job.settings.kpl_method),
                    on_image=on_image,
                    run_id=job.run_id,
                    progress=progress,
                    cancel=cancel,
                    cache=FeatureCache(),
                )
            except Cancelled:
                self.cancelled.emit(job_id)
                return
            finally:
                self.state.emit("ready", f"CLIP {clip.spec} on {clip.device}")
        else:
            from engine.clinkd import GenerationSettings, LocalBackend
            from engine.preannotate import LocalDispatcher, ReplicaDispatcher, run_preannotation

            settings = GenerationSettings(max_new_tokens=spec.max_new_tokens)

            def dispatcher_of(slot: str):
                where = job.settings.for_model(slot)
                if where.server_url:
                    backend = self._open_server(where, slot)
                    dispatcher = ReplicaDispatcher(
                        [backend], settings, job.concurrency, on_warning=lambda text: self.warning.emit(job_id, text)
                    )
                    return dispatcher, backend.info
                model = self._load_clinkd(where, slot)
                return LocalDispatcher(LocalBackend(model), settings, job.batch_size), model.info

            dispatcher, info = dispatcher_of("primary")
            second = second_info = None
            if job.second_opinion:
                second, second_info = dispatcher_of("second")
            segmenter = None
            if spec.task is PreTask.SEG:  # ClinKD's boxes are its prompts, as in `main.py annotate --task seg`
                chosen = job.settings
                segmenter = self._segmenter.load(
                    chosen.segmentation_model, chosen.device, chosen.dtype, self.state.emit
                )
            self.state.emit("busy", _device_text(info))
            try:
                stats = run_preannotation(
                    works,
                    spec,
                    dispatcher,
                    model_id=info.model_id,
                    second=second,
                    second_model_id=second_info.model_id if second_info is not None else None,
                    on_image=on_image,
                    run_id=job.run_id,
                    progress=progress,
                    cancel=cancel,
                    pause=job.pause,
                    segmenter=segmenter,
                )
            finally:
                self.state.emit("ready", _device_text(info))
        if stats.cancelled:
            self.cancelled.emit(job_id)
        else:
            self.result.emit(job_id, stats)

    # ----- KPL
    def _load_clip(self, settings: AssistantSettings):
        from engine.kpl import load_clip

        if not settings.clip_model:
            raise RuntimeError("No CLIP model is configured (Settings > CLIP model).")
        key = (settings.clip_model, settings.device)
        if self._clip is None or self._clip_key != key:
            self._clip = None
            self.state.emit("loading", f"CLIP {settings.clip_model}")
            self._clip = load_clip(settings.clip_model, device=settings.device)
            self._clip_key = key
        self.state.emit("busy", f"CLIP {self._clip.spec} on {self._clip.device}")
        return self._clip

    def _classify(self, job_id: int, job: ClassifyJob, cancel: threading.Event) -> None:
        from engine.kpl import Cancelled, FeatureCache, KplSettings, Pool, classify_pool, resolve_knowledge

        settings = job.settings
        if not settings.clip_model:
            raise RuntimeError("No CLIP model is configured (Settings > CLIP model).")
        knowledge = resolve_knowledge(settings.knowledge)
        self._load_clip(settings)
        try:
            result = classify_pool(
                Pool.from_pictures(job.pictures) if job.pictures else Pool.from_paths(list(job.paths)),
                knowledge,
                self._clip,
                KplSettings(k=settings.kpl_k, method=settings.kpl_method),
                cache=FeatureCache(),
                progress=lambda stage, done, total: self.progress.emit(job_id, stage, done, total),
                cancel=cancel,
            )
        except Cancelled:
            self.cancelled.emit(job_id)
        else:
            self.result.emit(job_id, result)
        finally:
            self.state.emit("ready", f"CLIP {self._clip.spec} on {self._clip.device}")

    def _unload(self) -> None:
        from engine.device import free_memory

        self._clinkd, self._clinkd_key = {}, {}
        self._clip = self._clip_key = None
        self._segmenter.unload()
        free_memory()
        self.state.emit("not loaded", "models unloaded")


class InferenceService(QObject):
    """The GUI-side handle: submit jobs, cancel them, shut the thread down on close."""

    _submit = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._tickets: dict[int, _Ticket] = {}
        self.running: int | None = None
        self.thread = QThread()
        self.thread.setObjectName("inference")
        self.worker = _Worker()
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.run)
        self.worker.started.connect(self._on_started)
        self.worker.finished.connect(self._on_finished)
        self.thread.start()

    def submit(self, job: object) -> int:
        job_id = next(self._ids)
        ticket = _Ticket(job)
        self._tickets[job_id] = ticket
        with self.worker.waiting_lock:
            self.worker.waiting += 1  # before the emit: a prefetch step now yields to this job
        self._submit.emit(job_id, ticket)
        return job_id

    def submit_pair(self, first: AskJob, second: AskJob) -> tuple[int, int]:
        """A second opinion: ``first`` and ``second`` answered at the same time (SecondOpinionJob);
        the two answers' job ids. Cancelling either id cancels both."""
        job_id = next(self._ids)
        second_id = next(self._ids)
        ticket = _Ticket(SecondOpinionJob(first, second, second_id))
        self._tickets[job_id] = self._tickets[second_id] = ticket
        with self.worker.waiting_lock:
            self.worker.waiting += 1
        self._submit.emit(job_id, ticket)
        return job_id, second_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel one job, or every queued and running job (and the idle prefetch with them)."""
        if job_id is None:
            self.worker.drop_prefetch()
        for key, ticket in self._tickets.items():
            if job_id is None or key == job_id:
                ticket.cancel.set()

    def shutdown(self) -> None:
        """Cancel everything, let the running job stop at its next check, and stop the thread."""
        self.cancel()
        self.thread.quit()
        if not self.thread.wait(THREAD_STOP_TIMEOUT_MS):
            raise RuntimeError("the inference thread did not stop in time")

    def _on_started(self, job_id: int) -> None:
        self.running = job_id

    def _on_finished(self, job_id: int) -> None:
        self._tickets.pop(job_id, None)
        if self.running == job_id:
            self.running = None


def _import_run_modules() -> None:
    """Import a pre-annotation run's modules while the model loads, not when a run starts: compiling a
    module holds the interpreter lock throughout, and at a run's start the window is busy showing it."""
    import engine.preannotate.job  # noqa: F401 - with it come the dispatchers and the server backend


def _device_text(info) -> str:
    from engine.device import describe_device

    if info.device.startswith("server"):
        return f"{info.model_id} · {info.path}"
    return f"{info.model_id} · {describe_device(info.device)} · {info.dtype}"


def _message(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 600 else text[:600] + "…"
