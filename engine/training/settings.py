"""Settings of the three training commands, with ClinKD's published values as defaults.

Where ClinKD's release says nothing, the default is our choice and the comment says so; every
such choice is a setting. Sources: ClinKD ``config/train_config.yaml`` (full fine-tune, bf16,
lr 5e-5 cosine, 3 epochs, batch 2 x 8 accumulation, cutoff 2048) and the vendored
LLaMA-Factory's defaults (vision tower and projector frozen, images capped at 768x768).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.evaluation.protocol import IOU_THRESHOLD

METHODS = ("full", "lora")
PRECISIONS = ("bf16", "pure-bf16", "fp32")
CURRICULA = ("order", "weight", "none")
FALLBACKS = ("reference", "skip")

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Linear layers of the language model that LoRA adapts (the vision tower's are named differently)."""


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the language model's linear layers (our defaults; ClinKD trained in full)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.targets:
            raise ValueError("LoRA needs rank >= 1, alpha > 0, 0 <= dropout < 1 and at least one target")


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning a Qwen2-VL-family checkpoint on Med-GRIT-style conversations."""

    model_dir: str
    data: tuple[str, ...]
    output_dir: str
    image_root: str | None = None  # None: each data file's folder
    method: str = "full"  # ClinKD: full fine-tune
    lora: LoraSettings = field(default_factory=LoraSettings)
    mcg_rope: bool = True  # ClinKD trains with MCG-RoPE positions
    gap_in: int = 2  # MCG-RoPE position gap text -> image (ClinKD's release: 2; stock Qwen2-VL: 1)
    gap_out: int = 2  # MCG-RoPE position gap image -> text (idem)
    freeze_vision: bool = True  # LLaMA-Factory default, not overridden by ClinKD
    freeze_merger: bool = True  # idem (the vision-language projector)
    precision: str | None = None  # None: "bf16" on a GPU, "fp32" on the CPU
    gradient_checkpointing: bool = True
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 2
    grad_accum: int = 8
    learning_rate: float | None = None  # None: 5e-5 (ClinKD) for full, 2e-4 for LoRA (our choice)
    lr_scheduler: str = "cosine"
    warmup_steps: float = 10  # an int is steps, a float in (0, 1) a fraction of all steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 2048  # ClinKD cutoff_len
    min_pixels: int = 512 * 512  # as at inference, so small images are upscaled the same way
    max_pixels: int = 768 * 768  # LLaMA-Factory's image_max_pixels default
    save_steps: int = 500
    save_total_limit: int | None = 2
    logging_steps: int = 10
    resume: str | None = None  # None | "auto" (latest checkpoint in output_dir, if any) | checkpoint folder
    seed: int = 42
    device: str = "auto"  # "auto": cuda:LOCAL_RANK when a GPU is visible, else cpu
    max_samples: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.data:
            raise ValueError("give at least one training data file")
        if self.batch_size < 1 or self.grad_accum < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise ValueError("batch_size, grad_accum, save_steps and logging_steps must be >= 1")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("train for epochs > 0 or max_steps > 0")
        if self.gap_in < 1 or self.gap_out < 1:
            raise ValueError(f"rope gaps must be >= 1, got {self.gap_in}, {self.gap_out}")
        if self.method == "lora" and not self.freeze_vision:
            raise ValueError("LoRA adapts the language model only; train the vision tower with method 'full'")

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.method == "full" else 2e-4


@dataclass(frozen=True)
class DistillSettings:
    """Pseudo-label knowledge distillation from a teacher checkpoint (ClinKD stage 2)."""

    teacher_dir: str
    alpha: float = 0.5  # ClinKD: (0.5 * kl + ce) / 1.5
    temperature: float = 0.5  # ClinKD: temp=0.5
    use_ce: bool = True  # ClinKD's if_use_entropy; False trains on the KL alone
    kd_reduction: str = "mean"  # our choice; "sum" is the published snippet's
    curriculum: str = "order"  # our reading of the confidence-margin curriculum (see docs/training.md, `distill`)
    teacher_dtype: str | None = None  # None: bf16 on a GPU, fp32 on the CPU
    margin_batch_size: int = 4  # batch size of the teacher's scoring pass

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.temperature <= 0:
            raise ValueError("alpha must be >= 0 and temperature > 0")
        if self.kd_reduction not in ("mean", "sum"):
            raise ValueError(f"kd_reduction must be 'mean' or 'sum', got {self.kd_reduction!r}")
        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum must be one of {CURRICULA}, got {self.curriculum!r}")
        if self.margin_batch_size < 1:
            raise ValueError("margin_batch_size must be >= 1")


@dataclass(frozen=True)
class ReflectSettings:
    """Reflective correction: find poor answers on training data, replace them by the best of N."""

    model_dir: str
    data: tuple[str, ...]
    output: str  # JSON file of new training samples (ClinKD layout, readable by `train`)
    image_root: str | None = None
    iou_threshold: float = IOU_THRESHOLD  # found at IoU > this: the papers' rule (box_found)
    similarity_threshold: float = 0.8  # our choice; MiniLM cosine to the reference below this is "low"
    candidates: int = 4  # N (unknown in ClinKD)
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 128  # MIA answers run past the evaluation's 80
    batch_size: int = 4  # questions per greedy batch
    hint: bool = True  # candidates see the reference answer ("VLLMs + GT" in ClinKD's figure)
    fallback: str = "reference"  # when no candidate passes: write the reference, or skip
    box_penalty: float = 0.5  # SASG: subtracted for a missing/invalid box, and per unmatched reference box
    min_pixels: int = 512 * 512
    max_pixels: int = 1024 * 1024
    device: str = "auto"
    dtype: str | None = None
    mcg_rope: bool | None = None  # None: as the checkpoint's config.json says
    max_samples: int | None = None
    embedder_dir: str | None = None  # None: the bundled all-MiniLM-L6-v2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("give at least one data file")
        if self.candidates < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("candidates, batch_size and max_new_tokens must be >= 1")
        if not 0 <= self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
