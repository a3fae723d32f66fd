"""Errors of the imaging engine.

Loading many files must never stop at the first bad one, so bulk opens collect `LoadError`
records; single-file calls raise `ImageLoadError`. Both carry one user-facing sentence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class ImageLoadError(Exception):
    """A file could not be opened or decoded; ``str(err)`` is a sentence fit for the user."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = os.fspath(path)


class DecodeCancelled(ImageLoadError):
    """A decode stopped because the viewer is closing: nothing is wrong with the file."""


class NotAnImage(ImageLoadError):
    """A file with neither a DICOM nor an image signature: a folder scan passes over it (counted
    in ``OpenResult.skipped``) instead of reporting it, unless its name says it is an image."""


class VolumeError(Exception):
    """Why a stack cannot be read as a volume; ``str(err)`` is one sentence for the user.

    Here, not in volume.py, so that the checked header reader (volume_headers) and the guard can
    raise it without importing the volume code.
    """


@dataclass(frozen=True)
class LoadError:
    """A file that could not be opened, reported (never raised) by ``open_paths``."""

    path: str
    message: str
