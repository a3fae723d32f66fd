"""Image stacks: what the viewer scrolls through, decoded lazily frame by frame.

Opening indexes headers only (anchors B4: "index first, decode per frame, keep at most N
decoded frames"); `ImageStack.frame` decodes on demand and keeps a small LRU bounded by bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydicom.dataset import Dataset

from engine.paths import SIDECAR_SUFFIX

from .decoder_pool import decoder_pool
from .decoders import decode_frame, decodes_in_pool
from .dicom_index import has_dicom_preamble, read_header
from .dicom_params import PixelSpacing, frame_params, frame_spacing, number_of_frames, slice_location
from .errors import DecodeCancelled, ImageLoadError, LoadError, NotAnImage
from .frame import Frame
from .guard import guarded
from .raster import RasterInfo, decode_raster_frame, probe_raster, raster_windows

CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class FrameSource:
    """Binds a displayed frame back to its file (annotations are re-bound to DICOM with it)."""

    path: str
    sop_instance_uid: str | None  # None for PNG/JPEG/TIFF
    frame_number: int  # 1-based frame number inside that file


@dataclass(eq=False)
class _Decoding:
    """A decode in flight, shared by the threads that ask for the same frame meanwhile."""

    done: threading.Event = field(default_factory=threading.Event)
    frame: Frame | None = None
    error: ImageLoadError | None = None


class _FrameReader(Protocol):
    def read(self, index: int) -> Frame: ...
    def source(self, index: int) -> FrameSource: ...
    def header(self, index: int) -> Dataset | None: ...


class ImageStack:
    """An ordered set of same-sized frames: a DICOM series, a multi-frame file, or a raster file."""

    def __init__(
        self,
        *,
        key: str,
        title: str,
        kind: str,
        n_frames: int,
        rows: int,
        columns: int,
        is_color: bool,
        modality: str,
        photometric: str,
        transfer_syntax: str,
        spacing: PixelSpacing | None,
        paths: list[str],
        reader: _FrameReader,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.key = key
        self.title = title
        self.kind = kind
        self.n_frames = n_frames
        self.rows = rows
        self.columns = columns
        self.is_color = is_color
        self.modality = modality
        self.photometric = photometric
        self.transfer_syntax = transfer_syntax
        self.spacing = spacing
        self.paths = paths
        self._reader = reader
        self._cache: OrderedDict[int, Frame] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._decoding: dict[int, _Decoding] = {}
        self._failed: dict[int, ImageLoadError] = {}

    def __repr__(self) -> str:
        return f"ImageStack({self.key!r}, {self.n_frames} frame(s), {self.columns}x{self.rows})"

    def frame(self, index: int) -> Frame:
        """Decoded frame `index` (0-based); ImageLoadError when the file cannot be decoded.

        Thread-safe: a frame being decoded by another thread (a prefetch) is waited for, not
        decoded twice. A frame that failed fails again without a new decode: damaged bytes stay
        damaged, and a decoder that crashed on them would crash again.
        """
        self._check(index)
        with self._lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
            if index in self._failed:
                raise self._failed[index]
            decoding = self._decoding.get(index)
            if decoding is None:
                decoding = self._decoding[index] = _Decoding()
                owner = True
            else:
                owner = False
        if not owner:  # another thread (a prefetch) decodes it: share its frame or its error
            decoding.done.wait()
            if decoding.error is not None:
                raise decoding.error
            return decoding.frame
        try:
            frame = self._reader.read(index)  # decode outside the lock: other frames stay readable
        except BaseException as error:  # waiters must not wait forever, whatever happened
            decoding.error = (
                error if isinstance(error, ImageLoadError) else ImageLoadError(self.key, "decoding stopped")
            )
            with self._lock:
                self._decoding.pop(index)
                if isinstance(error, ImageLoadError) and not isinstance(error, DecodeCancelled):
                    self._failed[index] = error
            decoding.done.set()
            raise
        decoding.frame = frame
        with self._lock:
            self._decoding.pop(index)
            self._cache[index] = frame
            self._cache.move_to_end(index)
            while len(self._cache) > 1 and self._cached_bytes() > self._cache_bytes:
                self._cache.popitem(last=False)
        decoding.done.set()
        return frame

    def cached_frame(self, index: int) -> Frame | None:
        """Frame `index` if it is already decoded, else None (never decodes: GUI-thread safe)."""
        self._check(index)
        with self._lock:
            return self._cache.get(index)

    def failures(self) -> dict[int, ImageLoadError]:
        """Frames that failed to decode (index -> error), in frame order."""
        with self._lock:
            return dict(sorted(self._failed.items()))

    def forget_failures(self) -> int:
        """Decode the failed frames again when next asked (after raising the time limit, say);
        how many were forgotten."""
        with self._lock:
            count = len(self._failed)
            self._failed.clear()
            return count

    def frame_source(self, index: int) -> FrameSource:
        self._check(index)
        return self._reader.source(index)

    def header(self, index: int) -> Dataset | None:
        """The header (no pixel data) of the file holding frame `index`; None for raster."""
        self._check(index)
        return self._reader.header(index)

    def _cached_bytes(self) -> int:
        return sum(f.stored.nbytes for f in self._cache.values())

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} out of range 0..{self.n_frames - 1}")


@dataclass
class OpenResult:
    """What an open produced: the stacks, the files that failed, and the files a folder scan passed over.

    ``skipped`` are files found while walking a folder that are not images at all (a notes.txt,
    a PDF report): they are not failures, so the viewer counts them instead of listing them as
    errors. A file named explicitly is never skipped; if it cannot be read it is an error.
    """

    stacks: list[ImageStack]
    errors: list[LoadError]
    skipped: list[str] = field(default_factory=list)


class _DicomFrames:
    """Frames of one or more DICOM files: (path, 0-based frame in file, header) each."""

    def __init__(self, entries: list[tuple[str, int, Dataset]]) -> None:
        self._entries = entries

    def read(self, index: int) -> Frame:
        path, frame_in_file, header = self._entries[index]
        stored, is_color = decode_frame(path, header, frame_in_file)
        if is_color:
            return Frame(index, stored, True, False, (), False)
        with guarded(path, "decoded"):
            params, windows = frame_params(header, frame_in_file)
            monochrome1 = str(header.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
            return Frame(index, stored, False, monochrome1, windows, bool(params.voi_luts), params)

    def source(self, index: int) -> FrameSource:
        path, frame_in_file, header = self._entries[index]
        uid = header.get("SOPInstanceUID")
        return FrameSource(path, str(uid) if uid else None, frame_in_file + 1)

    def header(self, index: int) -> Dataset | None:
        return self._entries[index][2]


class _RasterFrames:
    def __init__(self, path: str, file_format: str) -> None:
        self._path = path
        self._format = file_format

    def read(self, index: int) -> Frame:
        stored, is_color = decode_raster_frame(self._path, index, self._format)
        return Frame(index, stored, is_color, False, raster_windows(stored, is_color), False)

    def source(self, index: int) -> FrameSource:
        return FrameSource(self._path, None, index + 1)

    def header(self, index: int) -> Dataset | None:
        return None


def open_paths(paths: Sequence[str | os.PathLike[str]]) -> OpenResult:
    """Open files and folders (recursively); bad files become LoadErrors, never exceptions.

    DICOM single-frame files are grouped by SeriesInstanceUID (and image size) and sorted by
    position along the slice normal, falling back to InstanceNumber; multi-frame files and
    raster files are stacks of their own. Stacks come in the order their first file was found.
    """
    errors: list[LoadError] = []
    stacks: list[ImageStack | None] = []
    groups: dict[tuple[str, int, int], list[_DicomFile]] = {}
    group_slot: dict[tuple[str, int, int], int] = {}
    skipped: list[str] = []
    for path, scanned in _expand(paths, errors):
        try:
            opened = _open_file(path)
        except NotAnImage as exc:
            if scanned and not _has_image_suffix(path):
                skipped.append(path)
            else:
                errors.append(LoadError(exc.path, str(exc)))
            continue
        except ImageLoadError as exc:
            errors.append(LoadError(exc.path, str(exc)))
            continue
        if isinstance(opened, ImageStack):
            stacks.append(opened)
            continue
        if opened.n_frames > 1 or not opened.series_uid:
            stacks.append(_dicom_stack(os.path.abspath(path), [opened]))
            continue
        group = (opened.series_uid, opened.rows, opened.columns)
        if group not in groups:
            groups[group] = []
            group_slot[group] = len(stacks)
            stacks.append(None)
        groups[group].append(opened)
    seen_series: set[str] = set()
    for group, members in groups.items():
        series_uid, rows, columns = group
        key = f"series:{series_uid}"
        if series_uid in seen_series:  # a second image size within one series
            key += f"#{columns}x{rows}"
        seen_series.add(series_uid)
        stacks[group_slot[group]] = _dicom_stack(key, _sort_series(members))
    return OpenResult([s for s in stacks if s is not None], errors, skipped)


def open_image(path: str | os.PathLike[str]) -> ImageStack:
    """One file or folder as a stack (a folder's first stack); raises ImageLoadError."""
    result = open_paths([path])
    if result.stacks:
        return result.stacks[0]
    if result.errors:
        raise ImageLoadError(result.errors[0].path, result.errors[0].message)
    raise ImageLoadError(path, f"{os.path.basename(os.fspath(path))} contains no images.")


def _expand(paths: Sequence[str | os.PathLike[str]], errors: list[LoadError]) -> list[tuple[str, bool]]:
    """Files in the order given, folders walked recursively in name order; each with whether
    it was found by walking a folder (True) or named explicitly (False).

    Hidden files and folders (including ``.clinlens/``) and annotation sidecars are not images.
    """
    out: list[tuple[str, bool]] = []
    seen: set[str] = set()

    def add(path: str, scanned: bool = False) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append((path, scanned))

    for raw in paths:
        path = os.fspath(raw)
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and not name.endswith(SIDECAR_SUFFIX):
                        add(os.path.join(root, name), scanned=True)
        elif os.path.isfile(path):
            add(path)
        else:
            errors.append(LoadError(path, f"{os.path.basename(path) or path} does not exist."))
    return out


@dataclass(frozen=True)
class _DicomFile:
    """A vetted DICOM file and the header facts stacking needs, read once under the guard."""

    path: str
    header: Dataset
    rows: int
    columns: int
    n_frames: int
    series_uid: str
    location: float | None
    instance: float
    is_color: bool
    photometric: str
    syntax_name: str
    decodes_in_pool: bool  # compressed or deflated pixel data
    spacing: PixelSpacing | None
    title: str  # without the frame count


def _open_file(path: str) -> ImageStack | _DicomFile:
    """A raster file's stack, or a DICOM file with its header facts; raises ImageLoadError."""
    name = os.path.basename(path)
    try:
        if os.path.getsize(path) == 0:
            raise ImageLoadError(path, f"{name} is empty (0 bytes).")
        if has_dicom_preamble(path):
            return _dicom_file(path, read_header(path))
        info = probe_raster(path)
    except OSError as exc:
        raise ImageLoadError(path, f"{name} could not be read: {exc.strerror or exc}.") from exc
    if info is not None:
        return _raster_stack(info)
    try:
        header = read_header(path, force=True)
    except ImageLoadError as exc:
        # No DICOM preamble, no image signature, and not readable as preamble-less DICOM:
        # nothing says this file was ever meant to be an image.
        raise NotAnImage(path, str(exc)) from exc
    return _dicom_file(path, header)


# Extensions that say "this is an image": such a file that cannot be read is a failure even
# when a folder scan found it (a damaged .dcm must be reported, not passed over).
_IMAGE_SUFFIXES = frozenset(
    {".dcm", ".dicom", ".dic", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}
)


def _has_image_suffix(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in _IMAGE_SUFFIXES


def _dicom_file(path: str, header: Dataset) -> _DicomFile:
    with guarded(path, "read as DICOM"):
        photometric = str(header.get("PhotometricInterpretation", ""))
        syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
        n_frames = number_of_frames(header)
        return _DicomFile(
            path=path,
            header=header,
            rows=int(header.Rows),
            columns=int(header.Columns),
            n_frames=n_frames,
            series_uid=str(header.get("SeriesInstanceUID") or ""),
            location=slice_location(header),
            instance=_instance_number(header),
            is_color=int(header.get("SamplesPerPixel") or 1) > 1 or photometric.upper() == "PALETTE COLOR",
            photometric=photometric,
            syntax_name=syntax.name if syntax else "",
            decodes_in_pool=decodes_in_pool(syntax),
            spacing=frame_spacing(header, 0),
            title=_series_title(header, path),
        )


def _instance_number(header: Dataset) -> float:
    try:
        return float(header.get("InstanceNumber"))
    except (TypeError, ValueError):
        return float("inf")


def _raster_stack(info: RasterInfo) -> ImageStack:
    path = os.path.abspath(info.path)
    decoder_pool().warm()  # Pillow decodes in a decoder process: start one while the list fills
    return ImageStack(
        key=path,
        title=os.path.basename(path),
        kind="raster",
        n_frames=info.n_frames,
        rows=info.rows,
        columns=info.columns,
        is_color=info.is_color,
        modality="",
        photometric="RGB" if info.is_color else "MONOCHROME2",
        transfer_syntax="",
        spacing=None,
        paths=[path],
        reader=_RasterFrames(path, info.format),
    )


def _sort_series(members: list[_DicomFile]) -> list[_DicomFile]:
    """Slices by position along the slice normal when every slice has one, else InstanceNumber."""
    if all(m.location is not None for m in members):
        return sorted(members, key=lambda m: (m.location, m.instance, m.path))
    return sorted(members, key=lambda m: (m.instance, m.path))


def _dicom_stack(key: str, files: list[_DicomFile]) -> ImageStack:
    first = files[0]
    if first.decodes_in_pool:
        decoder_pool().warm()  # a decoder process starts while the viewer lists the stacks
    entries = [(os.path.abspath(f.path), i, f.header) for f in files for i in range(f.n_frames)]
    n_frames = len(entries)
    return ImageStack(
        key=key,
        title=f"{first.title} ({n_frames} frames)" if n_frames > 1 else first.title,
        kind="dicom",
        n_frames=n_frames,
        rows=first.rows,
        columns=first.columns,
        is_color=first.is_color,
        modality=str(first.header.get("Modality", "")),
        photometric=first.photometric,
        transfer_syntax=first.syntax_name,
        spacing=first.spacing,
        paths=[os.path.abspath(f.path) for f in files],
        reader=_DicomFrames(entries),
    )


def _series_title(header: Dataset, path: str) -> str:
    """The series description a reader recognises ("Chest CT 1.25 mm"); without one, modality and
    series number with the file name ("CT 1 · CT_small.dcm"), so two series never read the same."""
    description = str(header.get("SeriesDescription") or "").strip()
    if description:
        return description
    parts = [str(header.get(k) or "").strip() for k in ("Modality", "SeriesNumber")]
    known = " ".join(p for p in parts if p)
    return f"{known} · {os.path.basename(path)}" if known else os.path.basename(path)
