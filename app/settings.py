"""Assistant settings a user chooses once: where the weights are and how to run them.

Plain data, saved as JSON in the user's config folder; ``problems()`` turns a bad choice into
sentences the panels can show instead of failing later inside the worker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from engine.files import write_json_atomic
from engine.paths import config_dir

SETTINGS_FILE = "assistant.json"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float16", "float32")
MCG_ROPE = ("auto", "on", "off")
KPL_METHODS = ("kpl", "text", "inmap")


@dataclass(frozen=True)
class AssistantSettings:
    clinkd_dir: str = ""             # a Qwen2-VL-family checkpoint folder (ClinKD or stock Qwen2-VL)
    server_url: str = ""             # an OpenAI-compatible server (vLLM, SGLang) instead of the folder
    server_model: str = ""           # its served model name; empty: the only one it serves
    clip_model: str = ""             # open_clip spec: "ViT-L-14:openai", a checkpoint file or local-dir:
    knowledge: str = "tuberculosis-cxr"  # knowledge base name in resources/knowledge or a JSON file
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int = 1024 * 1024
    max_new_tokens: int = 80
    best_of: int = 1
    history_tokens: int = 1024       # follow-up questions: earlier turns sent within this many tokens
    mcg_rope: str = "auto"
    kpl_k: int = 8
    kpl_method: str = "kpl"

    @property
    def clinkd_configured(self) -> bool:
        return bool(self.clinkd_dir or self.server_url)

    def problems(self) -> list[str]:
        """Why these settings cannot work, one sentence each (empty when they can)."""
        found = []
        if self.server_url and not self.server_url.startswith(("http://", "https://")):
            found.append(f"The server URL must start with http:// or https://, not {self.server_url!r}.")
        if self.clinkd_dir and not Path(self.clinkd_dir).is_dir():
            found.append(f"The ClinKD folder {self.clinkd_dir} does not exist.")
        for name, allowed in (("device", DEVICES), ("dtype", DTYPES), ("mcg_rope", MCG_ROPE),
                              ("kpl_method", KPL_METHODS)):
            if getattr(self, name) not in allowed:
                found.append(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.")
        for name, low, high in (("max_pixels", 28 * 28, 4096 * 4096), ("max_new_tokens", 1, 4096),
                                ("best_of", 1, 32), ("kpl_k", 1, 256), ("history_tokens", 0, 32768)):
            value = getattr(self, name)
            if not low <= value <= high:
                found.append(f"{name} must be between {low} and {high}, not {value}.")
        return found


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings() -> AssistantSettings:
    """The saved settings; unknown keys are ignored and damaged files fall back to defaults."""
    try:
        data = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return AssistantSettings()
    known = {f.name: f.type for f in fields(AssistantSettings)}
    defaults = AssistantSettings()
    values = {}
    for name, value in data.items() if isinstance(data, dict) else ():
        if name in known and type(value) is type(getattr(defaults, name)):
            values[name] = value
    return replace(defaults, **values)


def save_settings(settings: AssistantSettings) -> None:
    write_json_atomic(settings_path(), asdict(settings))
