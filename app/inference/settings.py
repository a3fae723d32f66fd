"""Assistant settings a user chooses once: where the weights are and how to run them.

Plain data, saved as JSON in the user's config folder; ``problems()`` turns a bad choice into
sentences the panels can show instead of failing later inside the worker.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from engine.clinkd.families import FAMILY_CHOICES
from engine.files import JsonFileError, Loaded, load_store, read_json, write_json_atomic
from engine.paths import config_dir

SETTINGS_FILE = "assistant.json"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bfloat16", "float16", "float32")
MCG_ROPE = ("auto", "on", "off")
KPL_METHODS = ("kpl", "text", "inmap")


@dataclass(frozen=True)
class AssistantSettings:
    clinkd_dir: str = ""  # a grounded checkpoint folder (ClinKD, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, MedGemma)
    server_url: str = ""  # an OpenAI-compatible server (vLLM, SGLang) instead of the folder
    server_model: str = ""  # its served model name; empty: the only one it serves
    server_family: str = "auto"  # how the served model writes boxes: auto (from its name) or a model_type
    clip_model: str = ""  # open_clip spec: "ViT-L-14:openai", a checkpoint file or local-dir:
    knowledge: str = "tuberculosis-cxr"  # knowledge base name in resources/knowledge or a JSON file
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int = 1024 * 1024
    max_new_tokens: int = 80
    best_of: int = 1
    history_tokens: int = 1024  # follow-up questions: earlier turns sent within this many tokens
    mcg_rope: str = "auto"
    kpl_k: int = 8
    kpl_method: str = "kpl"
    decode_timeout_s: int = 30  # a compressed frame still decoding after this is abandoned
    segmentation_model: str = ""  # a SAM-family checkpoint folder (SAM, MedSAM) for the Segment tool
    # Second opinion: another model asked the same question (a folder, or a server instead)
    second_dir: str = ""
    second_server_url: str = ""
    second_server_model: str = ""
    observer_name: str = ""  # the reading observer who signs reports off, DICOM PN "Family^Given"
    observer_organization: str = ""  # their organisation, written into the signed report

    @property
    def clinkd_configured(self) -> bool:
        return bool(self.clinkd_dir or self.server_url)

    @property
    def second_configured(self) -> bool:
        return bool(self.second_dir or self.second_server_url)

    def for_model(self, slot: str) -> AssistantSettings:
        """These settings as the model in ``slot`` ("primary" or "second") runs with them: the second
        model shares everything (device, precision, answer length) but where it is; its server's family
        is read from its own model name, since the primary's override names another server."""
        if slot == "primary":
            return self
        if slot != "second":
            raise ValueError(f"unknown model slot {slot!r}")
        return replace(
            self,
            clinkd_dir=self.second_dir,
            server_url=self.second_server_url,
            server_model=self.second_server_model,
            server_family="auto",
        )

    def problems(self) -> list[str]:
        """Why these settings cannot work, one sentence each (empty when they can)."""
        found = []
        if self.server_url and not self.server_url.startswith(("http://", "https://")):
            found.append(f"The server URL must start with http:// or https://, not {self.server_url!r}.")
        if self.clinkd_dir and not Path(self.clinkd_dir).is_dir():
            found.append(f"The ClinKD folder {self.clinkd_dir} does not exist.")
        if self.second_server_url and not self.second_server_url.startswith(("http://", "https://")):
            found.append(
                f"The second opinion's server URL must start with http:// or https://, not {self.second_server_url!r}."
            )
        if self.second_dir and not Path(self.second_dir).is_dir():
            found.append(f"The second opinion's model folder {self.second_dir} does not exist.")
        if self.segmentation_model and not Path(self.segmentation_model).is_dir():
            found.append(f"The segmentation model folder {self.segmentation_model} does not exist.")
        for name, allowed in (
            ("device", DEVICES),
            ("dtype", DTYPES),
            ("mcg_rope", MCG_ROPE),
            ("kpl_method", KPL_METHODS),
            ("server_family", FAMILY_CHOICES),
        ):
            if getattr(self, name) not in allowed:
                found.append(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}.")
        for name, low, high in (
            ("max_pixels", 28 * 28, 4096 * 4096),
            ("max_new_tokens", 1, 4096),
            ("best_of", 1, 32),
            ("kpl_k", 1, 256),
            ("decode_timeout_s", 1, 600),
            ("history_tokens", 0, 32768),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                found.append(f"{name} must be between {low} and {high}, not {value}.")
        return found


SETTING_HELP = {
    "clinkd_dir": "Folder of a local grounded checkpoint (ClinKD, Qwen2-VL, Qwen2.5-VL, Qwen3-VL or MedGemma: "
    "config.json and *.safetensors) that answers questions on this computer.",
    "server_url": "Address of an OpenAI-compatible server (vLLM or SGLang) that answers instead of the local "
    "folder, for example http://gpu-server:8000.",
    "server_model": "Model name the server serves, as it lists it under /v1/models; leave it empty when the server "
    "serves only one.",
    "server_family": "How the served model writes boxes: auto reads it from the model name (Qwen2.5-VL, Qwen3-VL, "
    "MedGemma, else ClinKD's Qwen2-VL); name the family when the served name does not say it.",
    "device": "Where a local model runs: auto uses the GPU when there is one and the CPU otherwise.",
    "dtype": "Number precision of a local model's weights: auto is bfloat16 on a GPU and float32 on the CPU.",
    "max_pixels": "Largest image ClinKD is shown, in pixels (width × height); bigger frames are scaled down, "
    "so more pixels give finer detail and slower answers.",
    "max_new_tokens": "Longest answer, in tokens (a token is about three quarters of a word).",
    "best_of": "Answers generated per question; above 1 the most consistent one is kept (SASG), at that many "
    "times the time.",
    "history_tokens": "Follow-up questions carry the earlier turns within this many tokens; the oldest are left "
    "out beyond it (0: no history).",
    "mcg_rope": "ClinKD's multi-grid position encoding: auto follows the checkpoint's config.json, on or off "
    "overrides it.",
    "clip_model": "CLIP model for Classify: an open_clip name with weights (ViT-L-14:openai), "
    "NAME:/path/to/weights.pt, local-dir:FOLDER or hf-hub:ORG/REPO.",
    "knowledge": "Knowledge base for Classify: a bundled or user knowledge base name, or a JSON file of "
    "descriptions per class.",
    "kpl_k": "Descriptions per class that Classify keeps for the open images (the k best matching ones).",
    "kpl_method": "How Classify learns its class proxies: kpl (knowledge proxies with StableGreenkhorn), "
    "text (descriptions only, no learning) or inmap (balanced Sinkhorn).",
    "segmentation_model": "Folder of a local SAM-family checkpoint (SAM ViT-B/L/H or MedSAM: config.json, "
    "model.safetensors, preprocessor_config.json) that the Segment tool turns boxes into masks with.",
    "second_dir": "Second opinion: folder of another local checkpoint (any family the first model's folder may "
    "be) asked the same question, its answer and boxes shown beside the first model's.",
    "second_server_url": "Second opinion: address of an OpenAI-compatible server that answers as the second model "
    "instead of a folder.",
    "second_server_model": "Second opinion: the model name that server serves, as it lists it under /v1/models; "
    "leave it empty when it serves only one.",
    "observer_name": "You, the reading observer who signs reports off, as a DICOM person name: "
    "Family^Given (for example Doe^Jane); sign-off is refused without it.",
    "observer_organization": "Your organisation, written with your name into a signed report (DICOM SR and PDF).",
    "decode_timeout_s": "A compressed frame still decoding after this many seconds is abandoned with an error "
    "(damaged files can keep a decoder busy).",
}
"""What each setting does, one sentence: the dialog's tooltips (with the default added)."""


def default_text(name: str) -> str:
    """A setting's default as the dialog and docs show it ("none" for an empty text)."""
    value = getattr(AssistantSettings(), name)
    if name == "max_pixels":
        side = int(value**0.5)
        return f"{side}×{side}" if side * side == value else str(value)
    if name == "decode_timeout_s":
        return f"{value} s"
    return str(value) if value != "" else "none"


def setting_tooltip(name: str) -> str:
    """The tooltip of one setting: what it does, then its default."""
    return f"{SETTING_HELP[name]} Default: {default_text(name)}."


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


class SettingsError(ValueError):
    """A settings file that cannot be used; ``str(err)`` names the file and the reason."""


_KINDS = {str: "text", int: "an integer", bool: "true or false"}


def parse_settings(data: object, source: str | Path) -> AssistantSettings:
    """Settings from decoded JSON. Every known key must have its type (a damaged value is not
    silently dropped); unknown keys are ignored, since a newer ClinLens may add settings."""
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a JSON object of settings, got {json.dumps(data)[:40]}")
    defaults = AssistantSettings()
    values = {}
    for f in fields(AssistantSettings):
        if f.name in data:
            value, kind = data[f.name], type(getattr(defaults, f.name))
            if type(value) is not kind:
                raise SettingsError(f"{source}: {f.name} must be {_KINDS[kind]}, not {json.dumps(value)[:40]}")
            values[f.name] = value
    return replace(defaults, **values)


def read_settings_file(path: Path) -> AssistantSettings:
    try:
        data = read_json(path)
    except JsonFileError as err:
        raise SettingsError(str(err)) from None
    return parse_settings(data, path)


def read_settings() -> Loaded[AssistantSettings]:
    """The saved settings. A damaged file gives the defaults and is moved aside to
    ``assistant.json.damaged-<UTC time>`` (so saving never overwrites it); ``problem`` says why."""
    return load_store(settings_path(), read_settings_file, AssistantSettings, SettingsError)


def save_settings(settings: AssistantSettings) -> None:
    write_json_atomic(settings_path(), asdict(settings))
