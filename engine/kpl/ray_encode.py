"""KPL's image encoding spread over a Ray cluster; the proxies are still learned on the driver.

KPL learns its proxies from the whole pool at once (transductive), so that step stays in one
process; what scales with the dataset is reading, decoding, rendering and encoding every image.
Ray tasks render each frame from its file (``render_frame``: the same window, the same display
pipeline) and apply CLIP's own preprocess; a pool of actors, each holding the CLIP model, encodes
them in batches. Features stream back to ``encode_pool``, which caches each batch as locally.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.cluster import pack, require_ray, streamed, unpack
from engine.imaging import LoadError, Window
from engine.kpl.clip import LoadedClip, encode_image_batch, load_clip
from engine.kpl.images import Encoded, Pool, clip_input, render_frame
from engine.kpl.progress import CancelFlag, check_cancel

DECODE_CPUS = 0.5  # as for pre-annotation: a different share from the actors keeps the stages apart


def _prepare(row: dict[str, Any], window: Window | None, preprocess: Callable) -> dict[str, bytes]:
    """A Ray task: one frame rendered as displayed and preprocessed, or why it could not be."""
    index, path, frame_number, pixels = unpack(row)
    try:
        rgb = pixels if pixels is not None else render_frame(path, frame_number, window)
        return pack((index, clip_input(preprocess, rgb).numpy(), None))
    except Exception as error:  # noqa: BLE001 - a frame that cannot be decoded fails alone
        return pack((index, None, LoadError(path, str(error))))


class _Encode:
    """An actor: the CLIP model loaded once, then a batch of preprocessed frames per call."""

    def __init__(self, spec: str, device: str, allow_download: bool) -> None:
        self.clip = load_clip(spec, device=device, allow_download=allow_download)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items = [unpack({"item": b}) for b in batch["item"]]
        good = [(i, pixels) for i, pixels, _ in items if pixels is not None]
        out = [pack((i, None, error))["item"] for i, _, error in items if error is not None]
        if good:
            encoded = encode_image_batch(self.clip, torch.stack([torch.from_numpy(p) for _, p in good]))
            out += [pack((i, v.numpy(), None))["item"] for (i, _), v in zip(good, encoded, strict=True)]
        return {"item": out}


@dataclass(frozen=True)
class RayEncoder:
    """A ``PoolEncoder`` on the Ray cluster this process is connected to; ``clip`` is the model as
    ``load_clip`` takes it, loaded once in each of ``actors`` actors."""

    clip: str
    device: str = "auto"
    actors: int = 1
    allow_download: bool = False

    def __call__(
        self, pool: Pool, todo: list[int], clip: LoadedClip, batch_size: int, cancel: CancelFlag | None
    ) -> Iterator[Encoded]:
        if not todo:
            return
        ray = require_ray()
        rows = [pack((i, pool.images[i].path, pool.images[i].frame_number, pool.picture(i))) for i in todo]
        cpus = ray.cluster_resources().get("CPU", 1)
        gpus = 1.0 if self.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        dataset = (
            ray.data.from_items(rows, override_num_blocks=min(len(rows), max(1, int(4 * cpus))))
            .map(_prepare, fn_kwargs={"window": pool.window, "preprocess": clip.preprocess}, num_cpus=DECODE_CPUS)
            .map_batches(
                _Encode,
                fn_constructor_kwargs={"spec": self.clip, "device": self.device, "allow_download": self.allow_download},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                num_cpus=1,
                num_gpus=gpus,
            )
        )
        batch: list[tuple[int, torch.Tensor]] = []
        errors: list[LoadError] = []
        with streamed(dataset) as rows:
            for index, vector, error in rows:
                if error is not None:
                    errors.append(error)
                else:
                    batch.append((index, torch.from_numpy(np.asarray(vector))))
                if len(batch) == batch_size:
                    check_cancel(cancel)
                    yield batch, errors
                    batch, errors = [], []
        if batch or errors:
            yield batch, errors
