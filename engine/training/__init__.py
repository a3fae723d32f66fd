"""ClinKD training: MCG-RoPE fine-tuning (full or LoRA), pseudo-label distillation from a teacher,
and reflective correction, on Med-GRIT-style conversations.

Everything model-facing is engine.clinkd's: the loader, the chat prompt, MCG-RoPE positions,
generation and the SASG scorer; box markup goes through engine.grounding. A trained folder loads
in the ClinKD engine as it is. Typical use::

    result = train(TrainSettings("/models/Qwen2-VL-2B-Instruct", ("train.json",), "/runs/sft"))
    report = reflect(ReflectSettings("/runs/sft", ("train.json",), "/runs/reflected.json"))

Importing this package is light; torch, transformers and peft load on first use.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_attributes
from engine.training.errors import TrainingDataError, TrainingError
from engine.training.settings import DistillSettings, LoraSettings, ReflectSettings, TrainSettings

_LAZY = {
    "engine.training.data": (
        "Conversation",
        "DataSet",
        "Turn",
        "conversation_record",
        "load_rgb",
        "read_conversations",
        "write_records",
    ),
    "engine.training.encode": (
        "IGNORE_INDEX",
        "ChatCollator",
        "ChatDataset",
        "ChatEncoder",
        "assistant_labels",
        "chat_text",
    ),
    "engine.training.losses": ("LossParts", "clinkd_loss", "confidence_margins", "forward_kl"),
    "engine.training.model": ("PreparedModel", "export_checkpoint", "prepare_model"),
    "engine.training.trainer": (
        "TrainProgress",
        "TrainResult",
        "curriculum",
        "distill",
        "teacher_margins",
        "train",
    ),
    "engine.training.correction": (
        "Judgement",
        "QuestionRecord",
        "ReflectProgress",
        "ReflectReport",
        "Selection",
        "judge",
        "matched_boxes",
        "reflect",
        "select_candidate",
    ),
}

if TYPE_CHECKING:
    from engine.training.correction import (
        Judgement,
        QuestionRecord,
        ReflectProgress,
        ReflectReport,
        Selection,
        judge,
        matched_boxes,
        reflect,
        select_candidate,
    )
    from engine.training.data import (
        Conversation,
        DataSet,
        Turn,
        conversation_record,
        load_rgb,
        read_conversations,
        write_records,
    )
    from engine.training.encode import (
        IGNORE_INDEX,
        ChatCollator,
        ChatDataset,
        ChatEncoder,
        assistant_labels,
        chat_text,
    )
    from engine.training.losses import LossParts, clinkd_loss, confidence_margins, forward_kl
    from engine.training.model import PreparedModel, export_checkpoint, prepare_model
    from engine.training.trainer import TrainProgress, TrainResult, curriculum, distill, teacher_margins, train


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "IGNORE_INDEX",
    "ChatCollator",
    "ChatDataset",
    "ChatEncoder",
    "Conversation",
    "DataSet",
    "DistillSettings",
    "Judgement",
    "LoraSettings",
    "LossParts",
    "PreparedModel",
    "QuestionRecord",
    "ReflectProgress",
    "ReflectReport",
    "ReflectSettings",
    "Selection",
    "TrainProgress",
    "TrainResult",
    "TrainSettings",
    "TrainingDataError",
    "TrainingError",
    "Turn",
    "assistant_labels",
    "chat_text",
    "clinkd_loss",
    "confidence_margins",
    "conversation_record",
    "curriculum",
    "distill",
    "export_checkpoint",
    "forward_kl",
    "judge",
    "load_rgb",
    "matched_boxes",
    "prepare_model",
    "read_conversations",
    "reflect",
    "select_candidate",
    "teacher_margins",
    "train",
    "write_records",
]
