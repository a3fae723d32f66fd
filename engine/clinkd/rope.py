"""MCG-RoPE: Qwen2-VL multimodal rotary positions with configurable gaps between modalities.

ClinKD's released code (a patched ``get_rope_index`` of transformers 4.50) starts an image at the
last text position + 2 and the text after an image at the image's largest position + 2, where
stock Qwen2-VL uses + 1 for both. Inside the image the (t, h, w) grid is unchanged. This module
re-implements that rule with the two gaps as settings (``gap_in`` text -> image, ``gap_out``
image -> text), fixes the released code's crash on batches larger than one (its segment state
was not reset per sample), and installs it on ONE model instance, so a stock model loaded beside
a ClinKD one keeps its own positions. With both gaps = 1 the positions equal transformers' own.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

import torch

TEXT, IMAGE, VIDEO = 0, 1, 2  # mm_token_type_ids values (transformers' convention)


@dataclass(frozen=True)
class RopeGaps:
    """Position gaps around image segments; ClinKD's release uses 2 and 2, stock Qwen2-VL 1 and 1."""

    gap_in: int = 2
    gap_out: int = 2

    def __post_init__(self) -> None:
        if self.gap_in < 1 or self.gap_out < 1:
            raise ValueError(f"rope gaps must be >= 1, got {self.gap_in}, {self.gap_out}")


Segment = tuple[int, int | tuple[int, int, int]]
"""(TEXT, n_tokens) or (IMAGE, (t, h, w)) with h and w already divided by the spatial merge size."""


def mcg_positions(segments: Sequence[Segment], gaps: RopeGaps) -> torch.Tensor:
    """Positions (3, n) for one unpadded sequence of text and image segments.

    Text tokens get t = h = w; image tokens get start + (t, row, col). The first segment starts at
    0, an image at the previous maximum + gap_in, text after an image at the image maximum +
    gap_out, text after text (never produced by grouping, kept for completeness) at maximum + 1.
    """
    blocks: list[torch.Tensor] = []
    last_max: int | None = None
    previous: int | None = None
    for kind, spec in segments:
        if kind == TEXT:
            assert isinstance(spec, int)
            start = 0 if last_max is None else last_max + (gaps.gap_out if previous == IMAGE else 1)
            block = (torch.arange(spec) + start).expand(3, -1)
        elif kind == IMAGE:
            assert isinstance(spec, tuple)
            t, h, w = spec
            start = 0 if last_max is None else last_max + gaps.gap_in
            grid = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
            block = torch.stack([g.reshape(-1) for g in grid]) + start
        else:
            raise ValueError("MCG-RoPE positions are defined for text and image segments only (no video)")
        if block.numel():
            last_max = int(block.max())
        blocks.append(block)
        previous = kind
    return torch.cat(blocks, dim=1) if blocks else torch.zeros(3, 0, dtype=torch.long)


def _segments(token_types: list[int], grids: Iterator[torch.Tensor], merge: int) -> list[Segment]:
    segments: list[Segment] = []
    for kind, run in groupby(token_types):
        length = len(list(run))
        if kind == TEXT:
            segments.append((TEXT, length))
        elif kind == IMAGE:
            t, h, w = (int(v) for v in next(grids))
            if t * (h // merge) * (w // merge) != length:
                raise ValueError("image tokens do not match image_grid_thw")
            segments.append((IMAGE, (t, h // merge, w // merge)))
        else:
            raise ValueError("MCG-RoPE positions are defined for text and image segments only (no video)")
    return segments


def mcg_rope_index(
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor | None,
    image_grid_thw: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    *,
    image_token_id: int,
    spatial_merge_size: int,
    gaps: RopeGaps,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched positions (3, B, L) and rope deltas (B, 1), as transformers' ``get_rope_index``.

    Padding (attention_mask == 0, on either side) gets position 0 and is skipped; images are taken
    in order across the batch from ``image_grid_thw``. ``mm_token_type_ids`` may be None (older
    transformers), then image tokens are found by id.
    """
    if mm_token_type_ids is None:
        mm_token_type_ids = (input_ids == image_token_id).long()
    positions = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    grids = iter(image_grid_thw if image_grid_thw is not None else [])
    deltas = []
    for row in range(input_ids.shape[0]):
        if attention_mask is None:
            keep = torch.ones_like(input_ids[row], dtype=torch.bool)
        else:
            keep = attention_mask[row].bool()
        types_row = mm_token_type_ids[row][keep].tolist()
        sample = mcg_positions(_segments(types_row, grids, spatial_merge_size), gaps)
        positions[:, row, keep] = sample.to(positions.device, positions.dtype)
        deltas.append(int(sample.max()) + 1 - len(types_row) if sample.numel() else 0)
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def _rope_owner(model: torch.nn.Module) -> torch.nn.Module:
    """The submodule whose class defines get_rope_index (Qwen2VLModel since transformers 4.52)."""
    for module in (getattr(model, "model", None), model):
        if module is not None and hasattr(type(module), "get_rope_index"):
            return module
    raise TypeError(f"{type(model).__name__} has no get_rope_index to patch; is it a Qwen2-VL model?")


def install_mcg_rope(model: torch.nn.Module, gaps: RopeGaps) -> None:
    """Make this model instance (only) compute MCG-RoPE positions with ``gaps``."""
    owner = _rope_owner(model)
    config = model.config
    # bind calls through the installed version's own signature: its argument order changed
    # between transformers releases (mm_token_type_ids arrived in 5.x)
    stock = inspect.signature(type(owner).get_rope_index)

    def get_rope_index(self: torch.nn.Module, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        bound = stock.bind(self, *args, **kwargs).arguments
        if bound.get("video_grid_thw") is not None:
            raise ValueError("MCG-RoPE positions are defined for text and image segments only (no video)")
        return mcg_rope_index(
            bound["input_ids"],
            bound.get("mm_token_type_ids"),
            bound.get("image_grid_thw"),
            bound.get("attention_mask"),
            image_token_id=config.image_token_id,
            spatial_merge_size=config.vision_config.spatial_merge_size,
            gaps=gaps,
        )

    owner.get_rope_index = types.MethodType(get_rope_index, owner)
    owner.mcg_rope_gaps = gaps


def installed_gaps(model: torch.nn.Module) -> RopeGaps | None:
    """The gaps installed on this instance, or None for stock positions."""
    return getattr(_rope_owner(model), "mcg_rope_gaps", None)
