"""Propagation with SAM 2's video model: the slices of a series are the frames of a video.

Why not box chaining: ``Sam2VideoModel`` keeps a memory of the masks it has made (the prompted
slice plus the last few it tracked) and segments each next slice conditioned on it, so a shape
that changes from slice to slice is followed without re-prompting. transformers' video session
API is used as its docstrings describe (``init_video_session``, ``add_inputs_to_inference_session``,
then the model on one frame index at a time, as ``propagate_in_video_iterator`` does) — stepping
ourselves so that progress is reported and cancel is honoured between slices.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from engine.segmentation.errors import SegmenterError
from engine.segmentation.families import SAM2_VIDEO, Family
from engine.segmentation.predictor import Segmenter, SegmenterInfo, _MemoryGuard
from engine.segmentation.prompts import Propagation, SliceSource, check_box, check_image, check_points

OBJECT_ID = 1


class LazyFrames:
    """The session's frames, preprocessed only when the model asks for one.

    Why: the session stores every frame as a 1024×1024 float tensor (12 MB each in fp32); a CT
    series of 300 slices would take 3.6 GB. The session only indexes its frames and takes their
    count, so this mapping renders a slice on demand and keeps the few most recent.
    """

    def __init__(self, count: int, load: Callable[[int], torch.Tensor], keep: int = 2) -> None:
        self.count, self.load, self.keep = count, load, keep
        self._recent: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.count

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.count

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.count))

    def __getitem__(self, index: int) -> torch.Tensor:
        if index not in self:
            raise KeyError(index)
        if index not in self._recent:
            self._recent[index] = self.load(index)
            while len(self._recent) > self.keep:
                self._recent.pop(next(iter(self._recent)))
        return self._recent[index]

    def __setitem__(self, index: int, pixels: torch.Tensor) -> None:
        self._recent[index] = pixels


class VideoSegmenter(Segmenter):
    """A SAM 2 video checkpoint: one-slice prompts as a ``Segmenter`` (through a ``Sam2Model``
    sharing the video model's weights) and ``propagate`` with the video model's memory."""

    def __init__(
        self,
        image_model: torch.nn.Module,
        video_model: torch.nn.Module,
        processor: object,
        info: SegmenterInfo,
        cache_size: int = 4,
        family: Family = SAM2_VIDEO,
    ) -> None:
        super().__init__(image_model, processor, info, cache_size=cache_size, family=family)
        self.video_model = video_model

    def pixel_values(self, image_rgb: np.ndarray) -> torch.Tensor:
        """One slice as the video processor would prepare it: (3, 1024, 1024) normalised."""
        inputs = self.processor.image_processor(check_image(image_rgb), return_tensors="pt")
        return inputs["pixel_values"][0].to(self.device, self.dtype)

    def propagate(
        self,
        slices: SliceSource,
        start: int,
        frames: tuple[int, int],
        *,
        box: Sequence[float] | None = None,
        points: Sequence[Sequence[float]] = (),
        stop_when_empty: bool = True,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Propagation:
        """Prompt slice ``start`` and track the object up to ``frames[1]``, then down to ``frames[0]``.

        The same contract as ``engine.segmentation.propagate``: progress after every slice,
        cancel checked between slices (the masks so far kept), a direction stops where the object
        is gone unless ``stop_when_empty`` is False.
        """
        first, last = frames
        if not first <= start <= last:
            raise SegmenterError(
                f"The prompted slice {start} is outside the range {first}..{last} to propagate through."
            )
        if box is None and not points:
            raise SegmenterError("A segmentation prompt needs a box or at least one point.")
        start_image = check_image(slices(start))
        height, width = int(start_image.shape[0]), int(start_image.shape[1])
        clipped = check_box(box, height, width) if box is not None else None
        checked = check_points(points, height, width)

        def load(local: int) -> torch.Tensor:
            return self.pixel_values(start_image if local == start - first else slices(first + local))

        session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        session.processed_frames = LazyFrames(last - first + 1, load)
        prompt: dict = {}
        if clipped is not None:
            prompt["input_boxes"] = [[list(clipped)]]
        if checked:
            prompt["input_points"] = [[[[x, y] for x, y, _ in checked]]]
            prompt["input_labels"] = [[[label for _, _, label in checked]]]
        self.processor.add_inputs_to_inference_session(
            session, frame_idx=start - first, obj_ids=OBJECT_ID, original_size=(height, width), **prompt
        )

        total = last - first + 1
        result = Propagation()
        visited = [0]

        def step(index: int, reverse: bool) -> bool:
            """Segment one slice; False when the object is gone (stop this direction)."""
            with _MemoryGuard("propagating through the slices", str(self.device)), torch.inference_mode():
                out = self.video_model(inference_session=session, frame_idx=index - first, reverse=reverse)
                logits = out.pred_masks[:1].detach().float().cpu()
                mask = self.family.post_process(self.processor, logits, (height, width), (height, width))
                present = float(torch.sigmoid(out.object_score_logits.float().flatten()[0]))
            visited[0] += 1
            if progress is not None:
                progress(visited[0], total)
            found = mask[0, 0].numpy().astype(bool)
            if not found.any():
                return not stop_when_empty
            result.masks[index] = found
            result.scores[index] = present
            return True

        if not step(start, False):
            return result
        for direction, stop in ((1, last), (-1, first)):
            index = start + direction
            while (index <= stop) if direction > 0 else (index >= stop):
                if cancel is not None and cancel.is_set():
                    result.cancelled = True
                    return result
                if not step(index, direction < 0):
                    break
                index += direction
        return result
