"""Automatic, visibly distinct label colours for labels created on the fly."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

_GOLDEN = 0.618033988749895  # golden-ratio hue steps spread any number of hues evenly


def _hue(color: str) -> float:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hsv(r, g, b)[0]


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def distinct_color(existing: Iterable[str]) -> str:
    """A saturated ``#rrggbb`` whose hue is as far as possible from the colours already in use.

    Deterministic (same label set, same colour), so a re-opened project colours new labels the
    same way on every machine.
    """
    hues = [_hue(c) for c in existing]
    best, best_distance = "", -1.0
    for step in range(64):
        hue = (step * _GOLDEN) % 1.0
        distance = min((_hue_distance(hue, h) for h in hues), default=1.0)
        if distance > best_distance:
            r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
            best = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
            best_distance = distance
        if distance >= 0.08:  # about 30 degrees of hue: clearly different on screen
            break
    return best
