"""How an annotation document names the images it annotates, without opening them.

An ``ImageRef`` is what the sidecar remembers about an ``engine.imaging.ImageStack``: enough to
export (file names, sizes, DICOM UIDs, frame bindings, spacing) and to re-bind the annotations
when the image set is opened again, even from a moved folder. Frames and spacing reuse the
imaging records (``FrameSource``, ``PixelSpacing``), so a ref compares directly with a stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.imaging import FrameSource, PixelSpacing


@dataclass(frozen=True)
class ImageRef:
    """One image (an ImageStack: a series, a multi-frame file or a raster file) of the project.

    ``image_id`` is the ImageStack key ("series:<SeriesInstanceUID>" or the absolute file path);
    ``frames`` has one entry per frame in display order (index = ``Box.frame``).
    """

    image_id: str
    paths: tuple[str, ...]
    width: int
    height: int
    n_frames: int
    frames: tuple[FrameSource, ...]
    kind: str = "raster"  # "dicom" | "raster"
    title: str = ""
    channels: int = 1  # 1 grey, 3 colour (VOC <depth>)
    spacing: PixelSpacing | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(self.paths))
        object.__setattr__(self, "frames", tuple(self.frames))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_id}: image size must be positive, got {self.width}x{self.height}")
        if self.n_frames < 1 or len(self.frames) != self.n_frames:
            raise ValueError(f"{self.image_id}: n_frames={self.n_frames} but {len(self.frames)} frame entries")

    def frame(self, index: int) -> FrameSource:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"{self.image_id}: frame {index} out of range (0..{self.n_frames - 1})")
        return self.frames[index]

    def frames_in_file(self, path: str) -> int:
        """How many frames of this image live in ``path`` (>1 for a multi-frame file)."""
        return sum(1 for f in self.frames if f.path == path)

    def frame_index(self, sop_instance_uid: str, frame_number: int) -> int | None:
        """The current index of a DICOM frame, to re-bind boxes when a series is re-sorted."""
        for index, f in enumerate(self.frames):
            if f.sop_instance_uid == sop_instance_uid and f.frame_number == frame_number:
                return index
        return None


def image_ref_from_stack(stack: Any) -> ImageRef:
    """Describe an ``engine.imaging.ImageStack`` for the annotation document.

    Reads only what the stack already indexed (frame sources, spacing) plus the first header for
    the study/series UIDs; no pixel data is decoded.
    """
    study = series = None
    header = stack.header(0) if stack.kind == "dicom" else None
    if header is not None:
        study = str(header.get("StudyInstanceUID", "")) or None
        series = str(header.get("SeriesInstanceUID", "")) or None
    return ImageRef(
        image_id=stack.key,
        paths=tuple(stack.paths),
        width=int(stack.columns),
        height=int(stack.rows),
        n_frames=int(stack.n_frames),
        frames=tuple(stack.frame_source(i) for i in range(stack.n_frames)),
        kind=stack.kind,
        title=stack.title,
        channels=3 if stack.is_color else 1,
        spacing=stack.spacing,
        study_instance_uid=study,
        series_instance_uid=series,
    )
