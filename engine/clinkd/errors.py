"""Errors of the ClinKD engine. ``str(err)`` is a sentence a user can act on."""

from __future__ import annotations


class ClinKDError(Exception):
    """Base class: anything the ClinKD engine reports to its caller."""


class ModelFolderError(ClinKDError):
    """The model folder is missing, incomplete, or not a Qwen2-VL checkpoint."""


class QuantizationUnavailable(ClinKDError):
    """8-bit / 4-bit loading was asked for but bitsandbytes or a CUDA GPU is missing."""


class GenerationOutOfMemory(ClinKDError):
    """The GPU ran out of memory during a request; memory was freed and the model is still usable."""
