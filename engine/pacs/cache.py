"""On-disk cache of retrieved instances: ``<cache>/pacs/<study>/<series>/<sop>.dcm``.

Every instance is written to a hidden ``.part`` file and renamed into place, so a cancelled or
interrupted retrieve leaves only whole instances. A series whose retrieve finished gets a
``.complete`` marker (its instance count): only such a series is reopened from the cache
without asking the PACS, which is what makes reopening instant and offline. Whole series are
evicted, least recently used first, when the cache grows past its size limit.
Annotations never live here (see ``engine.paths.pacs_annotations_path``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

from pydicom import Dataset

from engine.files import JsonFileError, read_json, write_json_atomic
from engine.paths import pacs_cache_dir

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
COMPLETE = ".complete"
USED = ".used"
PART = ".part"


def check_uid(uid: str) -> str:
    """A UID safe to use as a folder name (digits and dots only, at most 64 characters)."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise ValueError(f"not a DICOM UID: {uid[:80]!r}")
    return uid


class InstanceCache:
    def __init__(self, root: Path | None = None, limit_bytes: int = 4096 * 1024 * 1024) -> None:
        self.root = Path(root) if root is not None else pacs_cache_dir()
        self.limit_bytes = limit_bytes

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

    def evict(self, keep: tuple[str, str] | None = None) -> list[Path]:
        """Delete least recently used series until the cache fits its limit; never ``keep``."""
        keep_dir = self.series_dir(*keep) if keep else None
        entries = []
        total = 0
        for folder in self._series_folders():
            size = 0
            for f in folder.iterdir():
                if f.name.endswith(PART) and f.stat().st_mtime < time.time() - 3600:
                    f.unlink(missing_ok=True)  # left behind by a crash, an hour ago or more
                    continue
                size += f.stat().st_size if f.is_file() else 0
            used = folder / USED
            entries.append((used.stat().st_mtime if used.exists() else folder.stat().st_mtime, folder, size))
            total += size
        removed = []
        for _, folder, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.limit_bytes:
                break
            if folder == keep_dir:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # the study folder, once its last series is gone
            total -= size
            removed.append(folder)
        return removed
