"""Errors of the segmentation engine. ``str(err)`` is one sentence a user can act on."""

from __future__ import annotations


class SegmenterError(Exception):
    """Base class: anything the segmentation engine reports to its caller (bad folder, bad prompt)."""


class SegmenterOutOfMemory(SegmenterError):
    """The device ran out of memory; memory was freed and the segmenter is still usable."""
