"""Errors of the training engine. ``str(err)`` is a sentence a user can act on."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: anything the training engine reports to its caller."""


class TrainingDataError(TrainingError):
    """A training file is missing, unreadable, or not in a Med-GRIT / ShareGPT layout; or a sample
    cannot be encoded (its image is missing, or alone exceeds the length limit)."""
