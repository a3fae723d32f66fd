"""Joining or starting the Ray cluster a run uses, and saying what to install when Ray is missing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import ModuleType

INSTALL = 'pip install ".[cluster]" (or pip install "ray[data]==2.60.0")'
LOCAL = "local"


class RayUnavailable(RuntimeError):
    """--ray was asked for and Ray is not installed (it is an optional extra)."""


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or RayUnavailable in one sentence saying what to install."""
    try:
        import ray
        import ray.data  # the [data] extra: pyarrow and pandas
    except ImportError as error:
        raise RayUnavailable(
            f"--ray needs Ray, which this installation lacks ({error}); install it with {INSTALL}."
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str = LOCAL, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected for the length of a run.

    ``address`` "local" starts a private single-machine cluster (``num_cpus`` CPUs, all by default)
    and shuts it down afterwards, processes included; "auto" joins the cluster this machine is a
    node of (``ray start`` ran here); anything else is a head address (``ray://head:10001`` or
    ``head:6379``). When Ray is already connected in this process (a test's cluster, a notebook)
    that connection is used and left as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet(ray)
    if address == LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet(ray: ModuleType) -> None:
    """Ray Data's per-run progress logs off: the commands print their own progress on stderr."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
