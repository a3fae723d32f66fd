"""The ``seg`` task's second step: a grounding answer's boxes to a mask on the frame the model saw.

Why here and not in the segmentation engine: what is specific to pre-annotation is the chain
(ClinKD's box is the segmenter's prompt, on the very pixels ClinKD was shown) and what a reviewer
needs to audit it: both models, the question, the raw answer, the window and the box in the
mask's provenance. The segmentation engine only knows prompts and masks.

A label whose answer holds no box, or whose box the segmenter finds nothing in, gets no mask and
a note (the image is still done: asking again gives the same answer). A segmenter that fails
(out of memory) fails the image, so that a resumed run tries it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.annotations import ImageRef, Provenance, Review, Source
from engine.annotations.masks import mask_frames
from engine.annotations.model import Mask, MeasuredValue, new_id, utc_now
from engine.clinkd.generation import AskResult
from engine.imaging import ImageStack
from engine.preannotate.spec import PreannotateSpec, PreTask
from engine.segmentation import SegmenterError, check_box


@dataclass
class SegProposals:
    """What one label's answer became: masks, notes for the reviewer, errors that fail the image."""

    masks: list[Mask] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def combined_model_id(clinkd: str, segmenter: str) -> str:
    """Both models, as one provenance ``model`` string (grounding first, then segmentation)."""
    return f"{clinkd} + {segmenter}"


def with_segmenter(spec: PreannotateSpec, segmenter: object) -> PreannotateSpec:
    """A ``seg`` spec naming its loaded segmenter: the id is part of the settings key (another
    segmentation model is another run). The CLI calls it before it reads the run log, the window's
    worker before its run; ``run_preannotation`` calls it again, so no caller can forget it."""
    if spec.task is not PreTask.SEG:
        return spec
    return replace(spec, segmenter=segmenter.info.model_id)  # type: ignore[attr-defined]


class MaskMaker:
    """Segments each answer box with a loaded ``Segmenter`` (one embedding per image and frame)."""

    def __init__(self, segmenter: object) -> None:
        self.segmenter = segmenter

    @property
    def model_id(self) -> str:
        return self.segmenter.info.model_id  # type: ignore[attr-defined]

    def proposals(
        self,
        stack: ImageStack,
        ref: ImageRef,
        frame: int,
        image: np.ndarray,
        label: str,
        result: AskResult,
        provenance: Provenance,
    ) -> SegProposals:
        """One mask for ``label``: the union of the segmenter's masks inside each answer box."""
        out = SegProposals()
        boxes = [(b.x1, b.y1, b.x2, b.y2) for b in result.boxes]
        if not boxes:
            out.notes.append(f"{label}: ClinKD found no box, so there is no mask")
            return out
        height, width = image.shape[:2]
        union = np.zeros((height, width), dtype=bool)
        scores, used = [], []
        for box in boxes:
            try:
                clipped = check_box(box, height, width)
            except SegmenterError as error:
                out.notes.append(f"{label}: {error}")
                continue
            try:
                segmented = self.segmenter.segment(image, clipped, key=f"{ref.image_id}/{frame}")  # type: ignore[attr-defined]
            except SegmenterError as error:
                out.errors.append(f"segmenting {label}: {error}")
                continue
            if segmented.empty:
                out.notes.append(f"{label}: the segmenter found nothing inside the box {_box_text(clipped)}")
                continue
            union |= segmented.mask
            scores.append(segmented.score)
            used.append([round(v, 2) for v in clipped])
        if not union.any():
            return out
        settings = json.loads(provenance.settings) if provenance.settings else {}
        settings.update({"boxes": used, "frame": frame})
        now = utc_now()
        out.masks.append(
            Mask(
                id=new_id(),
                frames=mask_frames(ref, {frame: union}),
                label=label,
                source=Source.MODEL,
                score=max(scores),
                note=result.text,
                review=Review.PENDING,
                created=now,
                modified=now,
                provenance=Provenance(
                    run=provenance.run,
                    key=provenance.key,
                    model=combined_model_id(provenance.model, self.model_id),
                    task=provenance.task,
                    question=provenance.question,
                    answer=provenance.answer,
                    settings=json.dumps(settings, sort_keys=True),
                    window=provenance.window,
                ),
                values=slice_values(stack, frame, union),
            )
        )
        return out


def slice_values(stack: ImageStack, frame: int, mask: np.ndarray) -> tuple[MeasuredValue, ...]:
    """Area, longest diameter and the values inside, in mm where the image has a pixel spacing."""
    from engine.annotations.measure import modality_unit
    from engine.segmentation import mask_values, measure_slice

    if stack.spacing is None:
        return ()  # a picture without pixel spacing: pixels only, no mm
    pixels = stack.frame(frame)
    values = None if pixels.is_color else pixels.modality_values()
    return mask_values(
        measure_slice(mask, stack.spacing.row_mm, stack.spacing.col_mm, values), modality_unit(stack.modality)
    )


def _box_text(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
