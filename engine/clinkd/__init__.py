"""ClinKD grounded question answering: Qwen2-VL-family loading, task prompts, generation
(streaming, cancel, out-of-memory recovery, batches), MCG-RoPE positions, SASG best-of-N, and
the same ask contract against an OpenAI-compatible inference server (``server``).

Typical use from a worker thread::

    clinkd = load_model(LoadSettings("/models/Qwen2-VL-2B-Instruct"))
    result = ask(clinkd, AskRequest(rgb, "left lung", Task.VG), on_text=print, cancel=event)
    backend = open_server(ServerSettings("http://gpu-server:8000"))   # or LocalBackend(clinkd)
    result = backend.ask(AskRequest(rgb, "left lung", Task.VG), on_text=print, cancel=event)
"""

from typing import TYPE_CHECKING

from engine.clinkd.conversation import (
    DEFAULT_HISTORY_TOKENS,
    FittedHistory,
    HistoryFileError,
    PriorTurn,
    chat_messages,
    fit_history,
    read_history_file,
)
from engine.clinkd.errors import ClinKDError, GenerationOutOfMemory, ModelFolderError, QuantizationUnavailable
from engine.clinkd.prompts import SYSTEM_PROMPT, Prompt, Task, build_prompt, default_question
from engine.lazy import lazy_attributes

# Prompts and errors are light; everything below imports torch and transformers (2-3 s), so it
# loads on first use (PEP 562): the GUI can build its task buttons without paying for torch.
_LAZY = {
    "engine.clinkd.generation": (
        "AskRequest",
        "AskResult",
        "Candidate",
        "GenerationSettings",
        "ask",
        "ask_batch",
    ),
    "engine.clinkd.loader": (
        "ClinKDModel",
        "LoadSettings",
        "ModelInfo",
        "load_model",
        "read_checkpoint_config",
    ),
    "engine.clinkd.rope": (
        "RopeGaps",
        "install_mcg_rope",
        "installed_gaps",
        "mcg_positions",
        "mcg_rope_index",
    ),
    "engine.clinkd.sasg": ("CandidateScore", "SentenceEmbedder", "score_candidates", "semantic_similarity"),
    "engine.clinkd.server": (
        "Backend",
        "LocalBackend",
        "ServerBackend",
        "ServerError",
        "ServerSettings",
        "ServerUnavailable",
        "open_server",
        "png_data_url",
        "served_models",
    ),
}

if TYPE_CHECKING:
    from engine.clinkd.generation import AskRequest, AskResult, Candidate, GenerationSettings, ask, ask_batch
    from engine.clinkd.loader import ClinKDModel, LoadSettings, ModelInfo, load_model, read_checkpoint_config
    from engine.clinkd.rope import RopeGaps, install_mcg_rope, installed_gaps, mcg_positions, mcg_rope_index
    from engine.clinkd.sasg import CandidateScore, SentenceEmbedder, score_candidates, semantic_similarity
    from engine.clinkd.server import (
        Backend,
        LocalBackend,
        ServerBackend,
        ServerError,
        ServerSettings,
        ServerUnavailable,
        open_server,
        png_data_url,
        served_models,
    )

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_HISTORY_TOKENS",
    "SYSTEM_PROMPT",
    "AskRequest",
    "AskResult",
    "Backend",
    "Candidate",
    "CandidateScore",
    "ClinKDError",
    "ClinKDModel",
    "FittedHistory",
    "GenerationOutOfMemory",
    "GenerationSettings",
    "HistoryFileError",
    "LoadSettings",
    "LocalBackend",
    "ModelFolderError",
    "ModelInfo",
    "PriorTurn",
    "Prompt",
    "QuantizationUnavailable",
    "RopeGaps",
    "SentenceEmbedder",
    "ServerBackend",
    "ServerError",
    "ServerSettings",
    "ServerUnavailable",
    "Task",
    "ask",
    "ask_batch",
    "build_prompt",
    "chat_messages",
    "default_question",
    "fit_history",
    "install_mcg_rope",
    "installed_gaps",
    "load_model",
    "mcg_positions",
    "mcg_rope_index",
    "open_server",
    "png_data_url",
    "read_checkpoint_config",
    "read_history_file",
    "score_candidates",
    "semantic_similarity",
    "served_models",
]
