"""Image pools for KPL: frames from the imaging engine, rendered as displayed, encoded in batches.

A pool is what KPL learns from: a folder, a series, or the user's selection of frames. Every
frame goes through ``engine.imaging.render_rgb`` (DICOM windowed as shown), then the CLIP
preprocess. Decoding and preprocessing run in a few threads ahead of the model; features are
looked up in and written to the ``FeatureCache`` by file content, frame and window.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from engine.imaging import ImageLoadError, ImageStack, LoadError, Window, open_image, open_paths, render_rgb
from engine.kpl.cache import FeatureCache
from engine.kpl.clip import LoadedClip, encode_image_batch
from engine.kpl.progress import CancelFlag, ProgressFn, check_cancel, report


@dataclass(frozen=True)
class PoolImage:
    """One pool member as plain data: which frame of which file, and a short name for it."""

    path: str
    frame_number: int  # 1-based inside the file
    title: str
    index: int  # position in the pool, in the order the frames were given


@dataclass(frozen=True)
class _Source:
    stack: ImageStack | None  # None: a single-file stack, re-opened when rendered
    path: str
    index: int  # frame index inside the stack
    pixels: np.ndarray | None = None  # a picture already rendered as displayed (a reformatted plane)


class Pool:
    """Frames to classify together, plus the files that could not be opened."""

    def __init__(self, sources: list[_Source], images: list[PoolImage], errors: list[LoadError], window: Window | None):
        self._sources = sources
        self.images = images
        self.errors = errors
        self.window = window
        self._digests: dict[str, str] = {}
        self._open_lock = threading.Lock()
        self._open: tuple[str, ImageStack] | None = None

    @classmethod
    def from_paths(cls, paths: Sequence[str | os.PathLike[str]], window: Window | None = None) -> Pool:
        """Every frame of every image under ``paths`` (files or folders, recursively)."""
        opened = open_paths(paths)
        return cls._build([(s, i) for s in opened.stacks for i in range(s.n_frames)], list(opened.errors), window)

    @classmethod
    def from_frames(cls, frames: Sequence[tuple[ImageStack, int]], window: Window | None = None) -> Pool:
        """A selection of already open frames (the viewer's series or selection)."""
        return cls._build(list(frames), [], window)

    @classmethod
    def from_pictures(cls, pictures: Sequence[tuple[str, str, np.ndarray]]) -> Pool:
        """Pictures already rendered as the user sees them, e.g. a reformatted plane of a volume:
        (key, title, (H, W, 3) uint8 RGB) each; ``key`` stands in for the path in results."""
        sources = [_Source(None, key, 0, np.ascontiguousarray(rgb, dtype=np.uint8)) for key, _, rgb in pictures]
        images = [PoolImage(key, 1, title, i) for i, (key, title, _) in enumerate(pictures)]
        return cls(sources, images, [], None)

    @classmethod
    def _build(cls, frames: list[tuple[ImageStack, int]], errors: list[LoadError], window: Window | None) -> Pool:
        sources, images = [], []
        for stack, index in frames:
            source = stack.frame_source(index)
            # Single-file stacks are re-opened on demand: holding hundreds of them would also
            # hold each one's decoded frame (the stack's LRU keeps at least one).
            keep = stack if len(stack.paths) > 1 else None
            sources.append(_Source(keep, source.path, index))
            name = os.path.basename(source.path)
            if len(stack.paths) > 1:
                title = f"{stack.title} [{index + 1}/{stack.n_frames}]"
            elif stack.n_frames > 1:
                title = f"{name} [frame {index + 1}/{stack.n_frames}]"
            else:
                title = name
            images.append(PoolImage(source.path, source.frame_number, title, len(images)))
        return cls(sources, images, errors, window)

    def __len__(self) -> int:
        return len(self.images)

    def _stack(self, source: _Source) -> ImageStack:
        if source.stack is not None:
            return source.stack
        with self._open_lock:  # consecutive frames of one multi-frame file share one opening
            if self._open is None or self._open[0] != source.path:
                self._open = (source.path, open_image(source.path))
            return self._open[1]

    def render(self, i: int) -> np.ndarray:
        """Frame i as the viewer shows it, (H, W, 3) uint8; ImageLoadError if it cannot be decoded."""
        source = self._sources[i]
        if source.pixels is not None:
            return source.pixels
        return render_rgb(self._stack(source).frame(source.index), self.window)

    def picture(self, i: int) -> np.ndarray | None:
        """Frame i when the pool holds its pixels already (a reformatted plane), else None: then
        ``render_frame(image.path, image.frame_number, window)`` renders it anywhere the file is."""
        return self._sources[i].pixels

    def content_key(self, i: int) -> str:
        """Names the pixels the model would see: file content, frame, window."""
        image, pixels = self.images[i], self._sources[i].pixels
        if pixels is not None:  # the displayed pixels are the whole content
            shape = "x".join(map(str, pixels.shape))
            return hashlib.sha256(f"picture\0{shape}\0".encode() + pixels.tobytes()).hexdigest()
        digest = self._digests.get(image.path)
        if digest is None:
            with open(image.path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            self._digests[image.path] = digest
        w = self.window
        window = "as-stored" if w is None else f"{w.center!r},{w.width!r},{w.function}"
        return hashlib.sha256(f"image\0{digest}\0{image.frame_number}\0{window}".encode()).hexdigest()


def render_frame(path: str, frame_number: int, window: Window | None) -> np.ndarray:
    """One pool frame as the viewer shows it, opened from its file alone (1-based ``frame_number``):
    what a Ray task on another node renders. A frame of a series file is that file's only frame."""
    stack = open_image(path)
    return render_rgb(stack.frame(min(frame_number, stack.n_frames) - 1), window)


def clip_input(preprocess: Callable[[Image.Image], torch.Tensor], rgb: np.ndarray) -> torch.Tensor:
    """A rendered frame as CLIP's input tensor, through the model's own ``preprocess``."""
    return preprocess(Image.fromarray(rgb))


Encoded = tuple[list[tuple[int, torch.Tensor]], list[LoadError]]
"""One batch out of an encoder: (pool index, feature) for each frame encoded, and the frames that failed."""


class PoolEncoder(Protocol):
    """Encodes the pool frames ``todo`` in batches of ``batch_size``, yielding each batch as it is done."""

    def __call__(
        self, pool: Pool, todo: list[int], clip: LoadedClip, batch_size: int, cancel: CancelFlag | None
    ) -> Iterator[Encoded]: ...


@dataclass(frozen=True)
class ThreadEncoder:
    """Frames rendered and preprocessed in ``workers`` threads a few batches ahead of the model, so
    the model rarely waits for the disk; batches encoded in this process."""

    workers: int | None = None

    def __call__(
        self, pool: Pool, todo: list[int], clip: LoadedClip, batch_size: int, cancel: CancelFlag | None
    ) -> Iterator[Encoded]:
        def prepare(i: int) -> torch.Tensor:
            return clip_input(clip.preprocess, pool.render(i))

        workers = self.workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kpl-prep") as executor:
            queue: deque[tuple[int, Future[torch.Tensor]]] = deque()
            upcoming = iter(todo)
            ahead = 2 * batch_size + workers

            def refill() -> None:
                while len(queue) < ahead:
                    nxt = next(upcoming, None)
                    if nxt is None:
                        return
                    queue.append((nxt, executor.submit(prepare, nxt)))

            try:
                refill()
                batch: list[tuple[int, torch.Tensor]] = []
                errors: list[LoadError] = []
                while queue:
                    i, future = queue.popleft()
                    refill()
                    try:
                        batch.append((i, future.result()))
                    except ImageLoadError as exc:
                        errors.append(LoadError(exc.path, str(exc)))
                    if batch and (len(batch) == batch_size or not queue):
                        check_cancel(cancel)
                        encoded = encode_image_batch(clip, torch.stack([t for _, t in batch]))
                        yield [(j, v) for (j, _), v in zip(batch, encoded, strict=True)], errors
                        batch, errors = [], []
                if errors:
                    yield [], errors
            except BaseException:
                executor.shutdown(wait=True, cancel_futures=True)
                raise


@dataclass(frozen=True)
class EncodedPool:
    """Features of the images that could be encoded (``kept`` indexes ``Pool.images``)."""

    features: torch.Tensor  # (len(kept), d) float32, L2-normalised
    kept: tuple[int, ...]
    errors: tuple[LoadError, ...]  # frames that failed to decode
    cache_hits: int
    cache_misses: int
    seconds: float


def encode_pool(
    pool: Pool,
    clip: LoadedClip,
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
    encoder: PoolEncoder | None = None,
) -> EncodedPool:
    """CLIP features of every pool image: cached ones read back, the others encoded in batches.

    ``encoder`` does the encoding: by default a ``ThreadEncoder`` of ``workers`` threads here; with
    ``--ray`` a ``RayEncoder`` (engine.kpl.ray_encode) on the cluster. Each finished batch is cached
    at once: a cancelled run keeps what it encoded.
    """
    start = time.perf_counter()
    n = len(pool)
    namespace = clip.cache_namespace
    keys: list[str] = []
    errors: list[LoadError] = []
    unreadable: set[int] = set()
    for i in range(n):
        check_cancel(cancel)
        try:
            keys.append(pool.content_key(i))
        except OSError as exc:
            keys.append("")
            unreadable.add(i)
            errors.append(LoadError(pool.images[i].path, f"{pool.images[i].title} could not be read: {exc}"))
    cached = cache.get(namespace, [k for k in keys if k]) if cache is not None else {}
    features = {i: torch.from_numpy(cached[k].copy()) for i, k in enumerate(keys) if k in cached}
    todo = [i for i in range(n) if i not in features and i not in unreadable]
    hits = len(features)
    report(progress, "encoding", hits, n - len(unreadable))

    done = hits
    for encoded, failed in (encoder or ThreadEncoder(workers))(pool, todo, clip, batch_size, cancel):
        errors.extend(failed)
        features.update(encoded)
        if cache is not None and encoded:
            cache.put(namespace, [(keys[j], v.numpy()) for j, v in encoded])
        done += len(encoded)
        if encoded:
            report(progress, "encoding", done, n - len(unreadable))
    kept = tuple(sorted(features))
    stacked = torch.stack([features[i] for i in kept]) if kept else torch.zeros(0, 0)
    return EncodedPool(stacked, kept, tuple(errors), hits, len(todo), time.perf_counter() - start)
