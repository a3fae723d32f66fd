"""Lazy package attributes (PEP 562): names from heavy submodules load on first use.

Why: engine.clinkd, engine.kpl and engine.training re-export functions whose modules import torch,
transformers or open_clip (seconds). The GUI needs a few light names from them (task templates,
knowledge bases) at start-up and must not pay for torch until a model is actually used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module


def lazy_attributes(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``name`` from its submodule on first access and
    keeps it in the package, so later lookups are plain attribute reads."""
    module_of = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
