"""How each Ray actor reaches the model: OpenAI-compatible servers, or a checkpoint it loads itself.

Why our own HTTP client (``engine.clinkd.server``) in an actor rather than ``ray.data.llm``'s
HTTP request processor: that processor ships in Ray's ``[llm]`` extra, which pins a vLLM release
(and its CUDA wheels) even to post requests, and it posts one JSON body to one URL and hands back
the raw reply. The actor instead builds the very prompt the local path builds (the served family's
box dialect and numbers), parses the answer with the same codec, spreads its questions over every
``--server`` replica with the same failover (``ReplicaDispatcher``), and so writes the same
proposals. A vLLM engine inside the actors (``vllm=True``) is the third way; it needs vllm
importable on the workers, and without it the run stops with one sentence before anything starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.clinkd.generation import GenerationSettings
from engine.clinkd.loader import LoadSettings, read_checkpoint_config
from engine.clinkd.server import Backend, ServerSettings


class VllmUnavailable(RuntimeError):
    """A vLLM engine stage was asked for and vllm is not importable."""


@dataclass(frozen=True)
class ModelRecipe:
    """What an actor needs to reach the model, as picklable settings (never a loaded model)."""

    servers: tuple[ServerSettings, ...] = ()  # OpenAI-compatible replicas, model names resolved
    load: LoadSettings | None = None  # or a checkpoint each actor loads
    concurrency: int = 8  # requests in flight per server, per actor
    batch_size: int = 8  # questions per batch on a loaded checkpoint
    vllm: bool = False  # the checkpoint runs in a vLLM engine instead of transformers

    def __post_init__(self) -> None:
        if bool(self.servers) == (self.load is not None):
            raise ValueError("a model recipe names either servers or a checkpoint to load")
        if self.vllm:
            check_vllm()
        if self.load is not None:  # here, before the cluster starts: a wrong folder is one sentence, not a dead actor
            read_checkpoint_config(self.load.model_dir)  # (the same path on every node: a shared filesystem)

    def actor_gpus(self, cluster_gpus: float) -> float:
        """GPUs an actor reserves: one for a checkpoint not pinned to the CPU on a cluster with GPUs,
        none to talk to servers."""
        if self.load is None or self.load.device == "cpu" or cluster_gpus <= 0:
            return 0.0
        return 1.0

    @property
    def local_model_id(self) -> str:
        """A checkpoint's model id without loading it (the loader names a model by its folder)."""
        if self.load is None:
            raise ValueError("servers name their own model")
        return Path(self.load.model_dir).resolve().name

    def backends(self) -> list[Backend]:
        """Open the servers (checked and resolved again from the actor) or load the checkpoint."""
        from engine.clinkd.loader import load_model
        from engine.clinkd.server import LocalBackend, open_server

        if self.load is not None:
            return [LocalBackend(load_model(self.load))]
        return [open_server(settings) for settings in self.servers]

    def dispatcher(self, settings: GenerationSettings, on_warning: Callable[[str], None] | None = None) -> object:
        """The dispatcher the local path would use for the same model: batches on a loaded
        checkpoint, or requests in flight over the replicas with failover."""
        from engine.clinkd.server import LocalBackend
        from engine.preannotate.dispatch import LocalDispatcher, ReplicaDispatcher

        backends = self.backends()
        if isinstance(backends[0], LocalBackend):
            return LocalDispatcher(backends[0], settings, self.batch_size)
        return ReplicaDispatcher(backends, settings, self.concurrency, on_warning=on_warning)  # type: ignore[arg-type]


def check_vllm() -> None:
    """VllmUnavailable in one sentence unless vllm can be imported here."""
    if importlib.util.find_spec("vllm") is None:
        raise VllmUnavailable(
            "A vLLM engine stage needs the vllm package on the driver and every GPU worker, and it is not "
            "installed here; install vllm on the GPU nodes, or serve the model with vLLM and pass --server URL."
        )
