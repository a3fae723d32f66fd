"""ClinKD grounded question answering: Qwen2-VL-family loading, task prompts, generation
(streaming, cancel, out-of-memory recovery, batches), MCG-RoPE positions and SASG best-of-N.

Typical use from a worker thread::

    clinkd = load_model(LoadSettings("/models/Qwen2-VL-2B-Instruct"))
    result = ask(clinkd, AskRequest(rgb, "left lung", Task.VG), on_text=print, cancel=event)
"""

from engine.clinkd.errors import ClinKDError, GenerationOutOfMemory, ModelFolderError, QuantizationUnavailable
from engine.clinkd.generation import (
    AskRequest,
    AskResult,
    Candidate,
    GenerationSettings,
    ask,
    ask_batch,
)
from engine.clinkd.loader import ClinKDModel, LoadSettings, ModelInfo, load_model, read_checkpoint_config
from engine.clinkd.prompts import SYSTEM_PROMPT, Prompt, Task, build_prompt, chat_messages
from engine.clinkd.rope import RopeGaps, install_mcg_rope, installed_gaps, mcg_positions, mcg_rope_index
from engine.clinkd.sasg import CandidateScore, SentenceEmbedder, score_candidates, semantic_similarity

__all__ = [
    "SYSTEM_PROMPT",
    "AskRequest",
    "AskResult",
    "Candidate",
    "CandidateScore",
    "ClinKDError",
    "ClinKDModel",
    "GenerationOutOfMemory",
    "GenerationSettings",
    "LoadSettings",
    "ModelFolderError",
    "ModelInfo",
    "Prompt",
    "QuantizationUnavailable",
    "RopeGaps",
    "SentenceEmbedder",
    "Task",
    "ask",
    "ask_batch",
    "build_prompt",
    "chat_messages",
    "install_mcg_rope",
    "installed_gaps",
    "load_model",
    "mcg_positions",
    "mcg_rope_index",
    "read_checkpoint_config",
    "score_candidates",
    "semantic_similarity",
]
