"""On-disk cache of retrieved instances: ``<cache>/pacs/<study>/<series>/<sop>.dcm``.

Every instance is written to a hidden ``.part`` file and renamed into place, so a cancelled or
interrupted retrieve leaves only whole instances. A series whose retrieve finished gets a
``.complete`` marker (its instance count): only such a series is reopened from the cache
without asking the PACS, which is what makes reopening instant and offline. Whole series are
evicted, least recently used first, when the cache grows past its size limit, except pinned
series: a series open in the viewer is decoded lazily from these files, so deleting it would pull
the images out from under the user. When everything left is pinned the cache stays over its limit
and says so once (logged, and returned by ``evict``) instead of failing the retrieve.
Annotations never live here (see ``engine.paths.pacs_annotations_path``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset

from engine.files import JsonFileError, read_json, write_json_atomic
from engine.paths import pacs_cache_dir

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
COMPLETE = ".complete"
USED = ".used"
PART = ".part"
SeriesKey = tuple[str, str]  # (StudyInstanceUID, SeriesInstanceUID)
log = logging.getLogger(__name__)


def check_uid(uid: str) -> str:
    """A UID safe to use as a folder name (digits and dots only, at most 64 characters)."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise ValueError(f"not a DICOM UID: {uid[:80]!r}")
    return uid


@dataclass(frozen=True)
class Eviction:
    """What one ``evict`` did: the series folders it deleted, and how far over its limit the cache
    still is (only pinned or kept series left). ``warning`` is set on the call that first found the
    cache stuck over its limit, so a caller shows it once, not after every retrieve."""

    removed: tuple[Path, ...]
    over_limit_bytes: int = 0
    warning: str = ""


class InstanceCache:
    def __init__(self, root: Path | None = None, limit_bytes: int = 4096 * 1024 * 1024) -> None:
        self.root = Path(root) if root is not None else pacs_cache_dir()
        self.limit_bytes = limit_bytes
        self._pinned: set[SeriesKey] = set()
        self._lock = threading.Lock()  # pins change on the GUI thread while a worker evicts
        self._warned = False  # the over-limit warning was given and the cache has not fit since
        self._unreported = ""  # that warning, until take_warning() hands it to the GUI

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        return self.root / check_uid(study_uid) / check_uid(series_uid)

    def put(self, study_uid: str, series_uid: str, dataset: Dataset) -> Path:
        """Write one instance atomically (temporary name, then rename); returns its final path."""
        folder = self.series_dir(study_uid, series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{check_uid(str(dataset.SOPInstanceUID))}.dcm"
        tmp = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}{PART}"
        try:
            dataset.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return target

    def paths(self, study_uid: str, series_uid: str) -> list[Path]:
        folder = self.series_dir(study_uid, series_uid)
        return sorted(folder.glob("*.dcm")) if folder.is_dir() else []

    def is_complete(self, study_uid: str, series_uid: str) -> bool:
        marker = self.series_dir(study_uid, series_uid) / COMPLETE
        try:
            count = read_json(marker)["instances"]
        except (JsonFileError, KeyError, TypeError):
            return False
        return len(self.paths(study_uid, series_uid)) >= count

    def mark_complete(self, study_uid: str, series_uid: str, instances: int) -> None:
        write_json_atomic(self.series_dir(study_uid, series_uid) / COMPLETE, {"instances": instances})

    def touch(self, study_uid: str, series_uid: str) -> None:
        """Record a use (the LRU order is the mtime of the ``.used`` file)."""
        folder = self.series_dir(study_uid, series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / USED).touch()

    def _series_folders(self) -> list[Path]:
        return (
            [s for study in self.root.iterdir() if study.is_dir() for s in study.iterdir() if s.is_dir()]
            if self.root.is_dir()
            else []
        )

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for s in self._series_folders() for f in s.iterdir() if f.is_file())

    def pin(self, study_uid: str, series_uid: str) -> None:
        """Never evict this series (it is open in the viewer) until ``unpin``."""
        with self._lock:
            self._pinned.add((check_uid(study_uid), check_uid(series_uid)))

    def unpin(self, study_uid: str, series_uid: str) -> None:
        with self._lock:
            self._pinned.discard((study_uid, series_uid))

    def pinned(self) -> frozenset[SeriesKey]:
        with self._lock:
            return frozenset(self._pinned)

    def series_of(self, path: str | Path) -> SeriesKey | None:
        """The (study, series) a file of this cache belongs to; None for a file elsewhere."""
        try:
            study, series, _name = Path(path).resolve().relative_to(self.root.resolve()).parts
            return check_uid(study), check_uid(series)
        except ValueError:
            return None

    def take_warning(self) -> str:
        """The over-limit warning not yet shown to the user ("" when none), once."""
        with self._lock:
            warning, self._unreported = self._unreported, ""
        return warning

    def _series_sizes(self) -> list[tuple[float, Path, int]]:
        """(last use, folder, bytes) of every series; drops ``.part`` files a crash left an hour ago or more."""
        entries = []
        for folder in self._series_folders():
            size = 0
            for f in folder.iterdir():
                if f.name.endswith(PART) and f.stat().st_mtime < time.time() - 3600:
                    f.unlink(missing_ok=True)
                    continue
                size += f.stat().st_size if f.is_file() else 0
            used = folder / USED
            entries.append((used.stat().st_mtime if used.exists() else folder.stat().st_mtime, folder, size))
        return entries

    def evict(self, keep: Iterable[SeriesKey] = ()) -> Eviction:
        """Delete least recently used series until the cache fits its limit; never a pinned series
        nor one in ``keep`` (the series a retrieve is writing)."""
        spared = {self.series_dir(*key) for key in (*self.pinned(), *keep)}
        entries = self._series_sizes()
        total = sum(size for _, _, size in entries)
        removed = []
        for _, folder, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.limit_bytes:
                break
            if folder in spared:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # the study folder, once its last series is gone
            total -= size
            removed.append(folder)
        return Eviction(tuple(removed), max(0, total - self.limit_bytes), self._over_limit_warning(total))

    def _over_limit_warning(self, total: int) -> str:
        """One warning per time the cache gets stuck over its limit: logged, kept for take_warning()."""
        with self._lock:
            if total <= self.limit_bytes:
                self._warned = False
                return ""
            if self._warned:
                return ""
            self._warned = True
            self._unreported = (
                f"The PACS image cache holds {_size(total)}, over its limit of {_size(self.limit_bytes)}, "
                "because every series left in it is open or being retrieved: raise the limit under "
                "File > PACS servers… or open fewer series."
            )
        log.warning(self._unreported)
        return self._unreported


def _size(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / (1024 * 1024):.0f} MB"
