"""Running a whole dataset on a Ray cluster: the session, the model each actor reaches, the rows.

Why Ray Data rather than a bigger dispatcher: on a cluster the work is reading, decoding and
rendering 100,000 images on every CPU, calling the model where it is (OpenAI-compatible servers,
or a checkpoint loaded in actors on the GPU nodes), retrying tasks that die, and streaming results
out as they come. Ray Data schedules exactly that; ``engine.preannotate.dispatch`` stays the right
tool for a desktop talking to a handful of servers. What is done to one image is defined once
(``engine.preannotate.job``, ``engine.kpl.images``, ``engine.evaluation.runner``); the pipelines in
``engine.preannotate.ray_run``, ``engine.kpl.ray_encode`` and ``engine.evaluation.ray_run`` only
schedule those functions. Ray is an optional extra (``pip install ".[cluster]"``): nothing here
imports it before a run asks for it, and without it ``require_ray`` says what to install.
"""

from engine.cluster.models import ModelRecipe, VllmUnavailable, check_vllm
from engine.cluster.rows import ClusterError, pack, streamed, unpack
from engine.cluster.session import RayUnavailable, ray_session, require_ray

__all__ = [
    "ClusterError",
    "ModelRecipe",
    "RayUnavailable",
    "VllmUnavailable",
    "check_vllm",
    "pack",
    "ray_session",
    "require_ray",
    "streamed",
    "unpack",
]
