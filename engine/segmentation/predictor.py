"""Box and point prompts on a SAM model, with the image embedding computed once per displayed slice.

Why a cache: the ViT image encoder is >95 % of a SAM call; the prompt encoder and mask decoder
are milliseconds. A radiologist refines one slice with several prompts, so the embedding of the
pixels as displayed (keyed by the caller: stack + frame + window + plane) is kept in a small LRU
and only the decoder runs per prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.segmentation.errors import SegmenterError, SegmenterOutOfMemory
from engine.segmentation.families import SAM, Family
from engine.segmentation.prompts import SegmentResult, check_box, check_image, check_points


@dataclass(frozen=True)
class SegmenterInfo:
    """What was loaded and how: shown in the UI and copied into a mask's provenance."""

    model_id: str
    path: str
    family: str  # the transformers class: "SamModel", "Sam2Model", "Sam2VideoModel"
    device: str
    dtype: str
    parameters: int


@dataclass
class Embedding:
    """One slice's image embedding and the sizes needed to map masks back to its pixels."""

    features: torch.Tensor | list[torch.Tensor]  # SAM: (1, C, 64, 64); SAM 2: three FPN levels
    original_size: tuple[int, int]  # (H, W) of the caller's image
    reshaped_size: tuple[int, int]  # (h, w) in the model input: SAM before padding, SAM 2 1024×1024


class Segmenter:
    """A loaded SAM or SAM 2 model with its processor. Owned by one worker thread; not thread-safe."""

    def __init__(
        self,
        model: torch.nn.Module,
        processor: object,
        info: SegmenterInfo,
        cache_size: int = 4,
        family: Family = SAM,
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.family = family
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[str, Embedding] = OrderedDict()
        self._memo: dict = {}  # constants of the model a family's decode keeps (SAM: positional embedding)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # -- embeddings ---------------------------------------------------------------------------

    def cached(self, key: str) -> bool:
        return key in self._cache

    def forget(self, key: str | None = None) -> None:
        """Drop one cached embedding, or all of them (``key`` None), e.g. when a window changes."""
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)

    def embed(self, image_rgb: np.ndarray, key: str | None = None) -> Embedding:
        """The embedding of ``image_rgb`` (the pixels as displayed), from the cache when ``key`` is there."""
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        image = check_image(image_rgb)
        inputs = self.processor.image_processor(image, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        with self._memory_guard("computing the image embedding"), torch.inference_mode():
            features = self.model.get_image_embeddings(pixel_values)
        entry = Embedding(
            features=features,
            original_size=(int(image.shape[0]), int(image.shape[1])),
            reshaped_size=self.family.reshaped_size(inputs),
        )
        if key is not None:
            self._cache[key] = entry
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return entry

    # -- prompts ------------------------------------------------------------------------------

    def segment(
        self,
        image: np.ndarray | str,
        box: Sequence[float] | None = None,
        points: Sequence[Sequence[float]] = (),
        *,
        key: str | None = None,
        multimask: bool = False,
    ) -> SegmentResult:
        """One mask for a box and/or points given in the image's pixel coordinates.

        ``image`` is the rendered RGB pixels, or the key of an embedding computed by ``embed``.
        With ``multimask`` SAM proposes three masks and the one with the best predicted IoU wins
        (better for a single point, where the object is ambiguous).
        """
        if isinstance(image, str):
            if image not in self._cache:
                raise SegmenterError(f"No image embedding is cached for {image!r}; embed the slice first.")
            self._cache.move_to_end(image)
            entry = self._cache[image]
        else:
            entry = self.embed(image, key)
        height, width = entry.original_size
        if box is None and not points:
            raise SegmenterError("A segmentation prompt needs a box or at least one point.")
        clipped = check_box(box, height, width) if box is not None else None
        checked = check_points(points, height, width)
        prompt = self.prompt_tensors(entry.original_size, clipped, checked)
        logits, score = self.decode(entry, prompt, multimask=multimask)
        mask = self.mask_from_logits(logits, entry)
        return SegmentResult(mask=mask, score=score)

    def prompt_tensors(
        self, original_size: tuple[int, int], box: Sequence[float] | None, points: Sequence[Sequence[float]]
    ) -> dict[str, torch.Tensor]:
        """Prompt coordinates mapped to the model's resized input exactly as the processor maps them."""
        tensors: dict[str, torch.Tensor] = {}
        normalize = self.processor._normalize_coordinates  # the processor's own mapping
        target = self.processor.target_size
        as_input = self.family.coords
        if box is not None:
            coords = normalize(
                target, as_input(np.asarray([box], dtype=np.float64)), original_size, is_bounding_box=True
            )
            tensors["input_boxes"] = torch.as_tensor(coords, dtype=self.dtype, device=self.device).reshape(1, 1, 4)
        if points:
            xy = np.asarray([[x, y] for x, y, _ in points], dtype=np.float64)
            coords = normalize(target, as_input(xy), original_size)
            tensors["input_points"] = torch.as_tensor(coords, dtype=self.dtype, device=self.device).reshape(
                1, 1, len(points), 2
            )
            labels = [int(label) for _, _, label in points]
            tensors["input_labels"] = torch.as_tensor(labels, dtype=torch.long, device=self.device).reshape(1, 1, -1)
        return tensors

    def decode(
        self, entry: Embedding, prompt: dict[str, torch.Tensor], *, multimask: bool = False
    ) -> tuple[torch.Tensor, float]:
        """Prompt encoder + mask decoder only: low-res logits (1, 1, 256, 256) and the predicted IoU."""
        with self._memory_guard("decoding the mask"), torch.inference_mode():
            masks, iou = self.family.decode(self.model, entry.features, prompt, multimask, self._memo)
        scores = iou[0, 0].float()
        best = int(torch.argmax(scores)) if multimask else 0
        return masks[0, 0, best][None, None].float(), float(scores[best])

    def mask_from_logits(self, logits: torch.Tensor, entry: Embedding) -> np.ndarray:
        """Low-res logits (1, 1, 256, 256) -> bool (H, W) mask on the caller's original pixels.

        The processor's own ``post_process_masks``, thresholded at logit 0: SAM upscales to the
        padded model input, cuts the padding away and scales to the original size; SAM 2 resizes
        straight to the original size (its input was stretched, not padded).
        """
        logits = logits.detach().float().cpu()
        masks = self.family.post_process(self.processor, logits, entry.original_size, entry.reshaped_size)
        return masks[0, 0].numpy().astype(bool)

    def _memory_guard(self, doing: str) -> _MemoryGuard:
        return _MemoryGuard(doing, str(self.device))


class _MemoryGuard:
    """Turns an out-of-memory error into SegmenterOutOfMemory after freeing what it can."""

    def __init__(self, doing: str, device: str) -> None:
        self.doing, self.device = doing, device

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: object) -> bool:
        if kind is not None and issubclass(kind, (torch.OutOfMemoryError, MemoryError)):
            from engine.device import free_memory

            free_memory()
            raise SegmenterOutOfMemory(
                f"Ran out of memory on {self.device} while {self.doing}; the model is still loaded — "
                "close other models or use a smaller segmentation model."
            ) from None
        return False
