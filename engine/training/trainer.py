"""Fine-tuning and pseudo-label distillation with the Hugging Face Trainer.

Why the Trainer: resumable checkpoints (model, optimizer, scheduler, RNG and data position),
gradient accumulation, cosine schedules, activation checkpointing, and multi-GPU through
accelerate / DeepSpeed come with it; this module only adds ClinKD's loss (engine.training.losses)
with an optional frozen teacher, the curriculum order, and progress as plain data.

Progress goes to a callback as ``TrainProgress`` (no tqdm: its monitor thread outlives the run
and nobody reads a bar inside the app); the CLI prints it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from engine.clinkd.loader import ClinKDModel, LoadSettings, load_model, no_progress_bars
from engine.files import JsonFileError, read_json, write_json_atomic
from engine.training.data import Conversation, read_conversations
from engine.training.encode import ChatCollator, ChatDataset, ChatEncoder
from engine.training.errors import TrainingError
from engine.training.losses import clinkd_loss, confidence_margins
from engine.training.model import PreparedModel, export_checkpoint, prepare_model
from engine.training.settings import DistillSettings, TrainSettings

RECORD_FILE = "training_record.json"
MARGINS_FILE = "teacher_margins.json"


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: the teacher's scoring pass ("scoring") or an optimizer step ("training")."""

    phase: str
    step: int
    total: int
    elapsed_s: float
    loss: float | None = None
    ce: float | None = None
    kl: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None

    @property
    def eta_s(self) -> float | None:
        return self.elapsed_s / self.step * (self.total - self.step) if self.step else None


ProgressCallback = Callable[[TrainProgress], None]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced, as plain data (also written to ``training_record.json``)."""

    output_dir: str
    global_step: int
    epochs: float
    train_loss: float
    runtime_s: float
    samples_per_second: float
    peak_gpu_memory_bytes: int | None
    trainable_parameters: int
    total_parameters: int
    conversations: int
    skipped_records: tuple[str, ...]
    resumed_from: str | None
    log_history: tuple[dict, ...] = field(default=())


class _Reporter(TrainerCallback):
    """Turns the Trainer's log events into TrainProgress for the caller (main process only)."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.started = time.perf_counter()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.started = time.perf_counter()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: object,
    ) -> None:
        if self.on_progress is None or not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        self.on_progress(
            TrainProgress(
                phase="training",
                step=state.global_step,
                total=state.max_steps,
                elapsed_s=time.perf_counter() - self.started,
                loss=logs.get("loss"),
                ce=logs.get("ce"),
                kl=logs.get("kl"),
                learning_rate=logs.get("learning_rate"),
                epoch=logs.get("epoch"),
            )
        )


class ClinKDTrainer(Trainer):
    """Trainer with ClinKD's loss on answer tokens, an optional teacher, and curriculum order.

    The loss is a mean over the micro-batch's answer tokens; the Trainer divides it by the
    accumulation steps (``loss_is_scaled_for_ga = False``).
    """

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: object,
        teacher: torch.nn.Module | None = None,
        distill: DistillSettings | None = None,
        sequential: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        self.distill = distill
        self.sequential = sequential
        self._parts: dict[str, list[torch.Tensor]] = {"ce": [], "kl": []}  # detached; read at log time

    def _get_train_sampler(self, train_dataset: object = None) -> torch.utils.data.Sampler | None:
        if self.sequential:  # the curriculum's order, easy to hard, every epoch
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return torch.utils.data.SequentialSampler(dataset)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, object]:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        weights = inputs.pop("sample_weight", None)
        outputs = model(**inputs, use_cache=False)
        teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(**inputs, use_cache=False).logits
        if self.distill is None:
            parts = clinkd_loss(outputs.logits, labels, sample_weight=weights)
        else:
            kd = self.distill
            parts = clinkd_loss(
                outputs.logits,
                labels,
                teacher_logits=teacher_logits,
                sample_weight=weights,
                alpha=kd.alpha,
                temperature=kd.temperature,
                use_ce=kd.use_ce,
                kd_reduction=kd.kd_reduction,
            )
        if model.training:
            self._parts["ce"].append(parts.ce)
            if parts.kl is not None:
                self._parts["kl"].append(parts.kl)
        return (parts.loss, outputs) if return_outputs else parts.loss

    def log(self, logs: dict[str, float], *args: object, **kwargs: object) -> None:
        if "loss" in logs:
            for name, values in self._parts.items():
                if values:
                    logs[name] = round(float(torch.stack(values).mean()), 4)
                values.clear()
        super().log(logs, *args, **kwargs)


def _training_arguments(settings: TrainSettings, prepared: PreparedModel) -> TrainingArguments:
    return TrainingArguments(
        output_dir=settings.output_dir,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.resolved_learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        bf16=prepared.precision == "bf16",
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        use_cpu=prepared.device == "cpu",
        dataloader_num_workers=settings.num_workers,
        remove_unused_columns=False,
        disable_tqdm=True,
        report_to="none",
    )


def _resume_point(settings: TrainSettings) -> str | None:
    if settings.resume is None:
        return None
    if settings.resume == "auto":
        folder = Path(settings.output_dir)
        return get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if not Path(settings.resume).is_dir():
        raise TrainingError(f"cannot resume: checkpoint folder {settings.resume} does not exist")
    return settings.resume


def load_teacher(distill: DistillSettings, student: PreparedModel) -> ClinKDModel:
    """Load the teacher on the student's device, frozen, with its own positions (its config's MCG flag).

    The teacher reads the student's batches, so it must share the tokenizer and the image patching.
    """
    info = student.clinkd.info
    teacher = load_model(
        LoadSettings(
            distill.teacher_dir,
            dtype=distill.teacher_dtype,
            device=student.device,
            min_pixels=info.min_pixels,
            max_pixels=info.max_pixels,
        )
    )
    teacher.model.requires_grad_(False)
    if teacher.processor.tokenizer.get_vocab() != student.clinkd.processor.tokenizer.get_vocab():
        raise TrainingError("the teacher's tokenizer differs from the student's; distillation needs the same one")
    keys = ("patch_size", "spatial_merge_size", "temporal_patch_size")
    teacher_vision, student_vision = teacher.model.config.vision_config, student.clinkd.model.config.vision_config
    if any(getattr(teacher_vision, k) != getattr(student_vision, k) for k in keys):
        raise TrainingError("the teacher patches images differently from the student; use a Qwen2-VL teacher")
    return teacher


def teacher_margins(
    teacher: torch.nn.Module,
    dataset: ChatDataset,
    collator: ChatCollator,
    batch_size: int,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """The teacher's confidence margin of every sample (engine.training.losses.confidence_margins)."""
    device = next(teacher.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    margins: list[float] = []
    started = time.perf_counter()
    total = math.ceil(len(dataset) / batch_size)
    with torch.inference_mode():
        for step, batch in enumerate(loader, 1):
            labels = batch.pop("labels")
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = teacher(**batch, use_cache=False).logits
            margins += confidence_margins(logits, labels.to(device)).tolist()
            if on_progress is not None:
                on_progress(TrainProgress("scoring", step, total, time.perf_counter() - started))
    return np.asarray(margins, dtype=np.float64)


def _cached_margins(
    path: Path, teacher_dir: str, conversations: Sequence[Conversation], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """Margins from ``path`` when they were computed by the same teacher on the same samples (resume)."""
    key = {"teacher": str(Path(teacher_dir).resolve()), "ids": [c.sample_id for c in conversations]}
    if path.is_file():
        try:
            saved = read_json(path)
            if {k: saved.get(k) for k in key} == key and len(saved["margins"]) == len(conversations):
                return np.asarray(saved["margins"], dtype=np.float64)
        except (JsonFileError, ValueError, KeyError, TypeError, AttributeError):
            pass
    margins = compute()
    write_json_atomic(path, {**key, "margins": margins.tolist()})
    return margins


def curriculum(margins: np.ndarray, mode: str) -> tuple[list[int], list[float] | None]:
    """Our reading of the confidence-margin curriculum: sample order and loss weights.

    - "order": most confident teacher first (stable sort by decreasing margin), unweighted;
    - "weight": dataset order (shuffled by the Trainer), each sample's loss times margin / mean margin;
    - "none": dataset order, unweighted.
    """
    n = len(margins)
    if mode == "order":
        return [int(i) for i in np.argsort(-margins, kind="stable")], None
    if mode == "weight":
        mean = float(margins.mean()) if n else 0.0
        return list(range(n)), [float(m / mean) if mean > 0 else 1.0 for m in margins]
    return list(range(n)), None


def _record(settings: TrainSettings, distill: DistillSettings | None, result: TrainResult) -> dict:
    return {
        "settings": asdict(settings),
        "distill": asdict(distill) if distill is not None else None,
        "result": {k: v for k, v in asdict(result).items() if k != "log_history"},
        "log_history": list(result.log_history),
    }


def _run(settings: TrainSettings, distill: DistillSettings | None, on_progress: ProgressCallback | None) -> TrainResult:
    data = read_conversations(settings.data, settings.image_root, settings.max_samples)
    prepared = prepare_model(settings)
    processor = prepared.clinkd.processor
    encoder = ChatEncoder(processor, prepared.clinkd.model.config.image_token_id, settings.max_length)
    collator = ChatCollator(encoder.ids.pad)
    conversations = list(data.conversations)
    teacher, weights, sequential = None, None, False
    if distill is not None:
        teacher = load_teacher(distill, prepared).model
        if distill.curriculum != "none":
            margins = _cached_margins(
                Path(settings.output_dir) / MARGINS_FILE,
                distill.teacher_dir,
                conversations,
                lambda: teacher_margins(
                    teacher, ChatDataset(conversations, encoder), collator, distill.margin_batch_size, on_progress
                ),
            )
            order, weights = curriculum(margins, distill.curriculum)
            conversations = [conversations[i] for i in order]
            sequential = distill.curriculum == "order"
    trainer = ClinKDTrainer(
        model=prepared.model,
        args=_training_arguments(settings, prepared),
        data_collator=collator,
        train_dataset=ChatDataset(conversations, encoder, weights),
        processing_class=processor,
        callbacks=[_Reporter(on_progress)],
        teacher=teacher,
        distill=distill,
        sequential=sequential,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to on_progress instead of stdout
    resume = _resume_point(settings)
    if prepared.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(prepared.device)
    with no_progress_bars():
        output = trainer.train(resume_from_checkpoint=resume)
    peak = int(torch.cuda.max_memory_allocated(prepared.device)) if prepared.device.startswith("cuda") else None
    metrics = output.metrics
    result = TrainResult(
        output_dir=str(Path(settings.output_dir).resolve()),
        global_step=trainer.state.global_step,
        epochs=float(trainer.state.epoch or 0.0),
        train_loss=float(output.training_loss),
        runtime_s=float(metrics.get("train_runtime", 0.0)),
        samples_per_second=float(metrics.get("train_samples_per_second", 0.0)),
        peak_gpu_memory_bytes=peak,
        trainable_parameters=prepared.trainable_parameters,
        total_parameters=prepared.total_parameters,
        conversations=len(conversations),
        skipped_records=data.skipped,
        resumed_from=resume,
        log_history=tuple(trainer.state.log_history),
    )
    if trainer.is_world_process_zero():
        with no_progress_bars():
            export_checkpoint(prepared, settings.output_dir)
        write_json_atomic(Path(settings.output_dir) / RECORD_FILE, _record(settings, distill, result))
    return result


def train(settings: TrainSettings, on_progress: ProgressCallback | None = None) -> TrainResult:
    """Fine-tune ``settings.model_dir`` on Med-GRIT conversations; export to ``settings.output_dir``."""
    return _run(settings, None, on_progress)


def distill(settings: TrainSettings, kd: DistillSettings, on_progress: ProgressCallback | None = None) -> TrainResult:
    """Pseudo-label KD: the student learns the teacher's answer-token distributions (and the labels)."""
    return _run(settings, kd, on_progress)
