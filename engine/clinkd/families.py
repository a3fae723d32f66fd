"""What differs between the grounded model families, in one record per family.

Why a record: Qwen2-VL (ClinKD), Qwen2.5-VL, Qwen3-VL and MedGemma (Gemma 3) share the ask
contract (one image, a chat, a generated answer with boxes) but not the details: the model class,
how a box is written in a question and read from an answer (engine.grounding's dialects), whether
the numbers are on the 0-1000 grid or in pixels of the processor's resized input, and whether
ClinKD's own parts (MCG-RoPE positions, distillation training) apply. Keeping those facts here
keeps the loader, generation and the server backend free of family branches.

Formats, as each family's documentation and maintainers state them: Qwen2-VL writes
``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` on the 0-1000 grid; Qwen2.5-VL writes JSON
``{"bbox_2d": [x1, y1, x2, y2]}`` in absolute pixels of the image after the processor's
``smart_resize`` (QwenLM/Qwen3-VL issue #676); Qwen3-VL writes the same JSON on a relative
0-1000 grid (QwenLM/Qwen3-VL issues #1486, #1741); MedGemma 1.5 writes ``{"box_2d": [y0, x0, y1,
x1]}`` on the 0-1000 grid, y first, after "Final Answer:" (the Gemini box convention).

Light module (no torch): the CLI, the GUI settings and both backends import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.grounding import GRID_FRAME, Frame


@dataclass(frozen=True)
class Family:
    """How one grounded family is loaded, prompted with a box, and read."""

    model_type: str  # config.json model_type; also the --family / server_family value
    name: str  # for sentences: "Qwen2.5-VL"
    architectures: tuple[str, ...]  # config.json architectures this family loads
    model_class: str  # the transformers model class
    dialect: str  # engine.grounding box dialect of its questions and answers
    absolute: bool  # numbers in pixels of the processor's resized input, not on the 0-1000 grid
    patch_factor: int | None  # the processor resizes to multiples of this (patch x merge); None: fixed size
    fixed_image_tokens: int | None  # image tokens of a fixed-size processor (Gemma 3: 256)
    clinkd: bool  # ClinKD's parts apply: MCG-RoPE positions, distillation training
    server_names: tuple[str, ...]  # lower-case parts of a served model name that say this family

    @property
    def pixel_budget(self) -> bool:
        """True when the processor takes min / max pixels (the Qwen families)."""
        return self.patch_factor is not None

    def frame(self, width: int, height: int, min_pixels: int, max_pixels: int) -> Frame:
        """The space this family's box numbers live in for a ``width`` x ``height`` input image.

        The grid for relative families; for Qwen2.5-VL the size the processor resizes the image
        to, computed by the processor's own ``smart_resize`` with its patch factor and pixel budget.
        """
        if not self.absolute:
            return GRID_FRAME
        resized_height, resized_width = resized_size(height, width, self.patch_factor or 28, min_pixels, max_pixels)
        return float(resized_width), float(resized_height)

    def image_tokens(self, width: int, height: int, min_pixels: int, max_pixels: int) -> int:
        """Image tokens the processor makes of a ``width`` x ``height`` image (what a server used)."""
        if self.patch_factor is None:
            return int(self.fixed_image_tokens or 0)
        h, w = resized_size(height, width, self.patch_factor, min_pixels, max_pixels)
        return (h // self.patch_factor) * (w // self.patch_factor)


def resized_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) after the Qwen processors' resize: transformers' own ``smart_resize``."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


QWEN2_VL = Family(
    model_type="qwen2_vl",
    name="Qwen2-VL",
    architectures=("Qwen2VLForConditionalGeneration",),
    model_class="Qwen2VLForConditionalGeneration",
    dialect="qwen2vl",
    absolute=False,
    patch_factor=28,
    fixed_image_tokens=None,
    clinkd=True,
    server_names=("qwen2-vl", "qwen2vl", "qwen2_vl", "clinkd"),
)
QWEN2_5_VL = Family(
    model_type="qwen2_5_vl",
    name="Qwen2.5-VL",
    architectures=("Qwen2_5_VLForConditionalGeneration",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    dialect="bbox_2d",
    absolute=True,
    patch_factor=28,
    fixed_image_tokens=None,
    clinkd=False,
    server_names=("qwen2.5-vl", "qwen2_5-vl", "qwen2_5_vl", "qwen25-vl", "qwen2.5vl"),
)
QWEN3_VL = Family(
    model_type="qwen3_vl",
    name="Qwen3-VL",
    architectures=("Qwen3VLForConditionalGeneration",),
    model_class="Qwen3VLForConditionalGeneration",
    dialect="bbox_2d",
    absolute=False,
    patch_factor=32,
    fixed_image_tokens=None,
    clinkd=False,
    server_names=("qwen3-vl", "qwen3vl", "qwen3_vl"),
)
GEMMA3 = Family(
    model_type="gemma3",
    name="MedGemma (Gemma 3)",
    architectures=("Gemma3ForConditionalGeneration",),
    model_class="Gemma3ForConditionalGeneration",
    dialect="box_2d",
    absolute=False,
    patch_factor=None,
    fixed_image_tokens=256,
    clinkd=False,
    server_names=("medgemma", "gemma-3", "gemma3"),
)
FAMILIES: dict[str, Family] = {f.model_type: f for f in (QWEN2_VL, QWEN2_5_VL, QWEN3_VL, GEMMA3)}
"""config.json model_type -> family. The first is ClinKD's own, the default."""

FAMILY_CHOICES = ("auto", *FAMILIES)
"""What --family / --server-family and the settings accept: auto (from the name), or a model_type."""


def supported() -> str:
    """The supported families for a sentence: "Qwen2-VL (qwen2_vl), Qwen2.5-VL (qwen2_5_vl), ..."."""
    return ", ".join(f"{f.name} ({f.model_type})" for f in FAMILIES.values())


def family_of_config(config: Mapping) -> Family | None:
    """The family of a checkpoint's config.json: its ``model_type``, when its ``architectures`` (if
    listed) name that family's model class; None for anything else."""
    model_type = config.get("model_type")
    family = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    architectures = config.get("architectures")
    listed = isinstance(architectures, list) and bool(architectures)
    if family is not None and listed and not any(a in family.architectures for a in architectures):
        return None
    return family


def family_named(name: str) -> Family:
    """The family a setting names (a model_type); ValueError naming the choices otherwise."""
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"unknown model family {name!r}; choose one of {', '.join(FAMILY_CHOICES)}")
    return family


def family_of_served_model(model: str, setting: str = "auto") -> Family:
    """The family of a served model: the setting when it names one, else read from the served name
    ("Qwen/Qwen2.5-VL-7B-Instruct" -> Qwen2.5-VL); ClinKD's Qwen2-VL when the name says nothing."""
    if setting != "auto":
        return family_named(setting)
    lowered = model.lower()
    # the longest matching part wins: "qwen2.5-vl" must not be read as a "qwen2-vl"-ish name
    matches = [(len(part), f) for f in FAMILIES.values() for part in f.server_names if part in lowered]
    return max(matches, key=lambda m: m[0])[1] if matches else QWEN2_VL
