"""Where ClinLens keeps per-user files.

One place decides the directories so that the app, the CLI and every engine module agree, and so
that tests can point all of them at a temporary folder with environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "ClinLens"
# Annotation sidecars: ``<file>.clinlens.json`` beside a file, ``.clinlens/`` inside a folder.
# Image discovery skips both; the annotation store writes them.
SIDECAR_SUFFIX = ".clinlens.json"
SIDECAR_DIR = ".clinlens"


def config_dir() -> Path:
    """User configuration (presets, settings, recent files); ``CLINLENS_CONFIG_DIR`` overrides it."""
    override = os.environ.get("CLINLENS_CONFIG_DIR")
    path = Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Re-creatable data (feature caches); ``CLINLENS_CACHE_DIR`` overrides it."""
    override = os.environ.get("CLINLENS_CACHE_DIR")
    path = Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User data that must survive (annotations of read-only or PACS images); ``CLINLENS_DATA_DIR`` overrides it.

    Unlike :func:`cache_dir`, nothing here may be evicted: it holds people's work.
    """
    override = os.environ.get("CLINLENS_DATA_DIR")
    path = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resources_dir() -> Path:
    """The bundled resources (presets, demo image, knowledge bases, icon).

    An installed ClinLens carries them as package data in ``engine/resources`` (pyproject.toml maps
    the checkout's top-level ``resources/`` there); a checkout uses ``resources/`` itself.
    """
    engine = Path(__file__).resolve().parent
    installed = engine / "resources"
    return installed if installed.is_dir() else engine.parent / "resources"


def is_bundled(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies inside the bundled resources (never a place to write user data)."""
    return Path(path).resolve().is_relative_to(resources_dir())


def pacs_cache_dir() -> Path:
    """Instances retrieved from a PACS (evictable): ``<cache>/pacs/<study>/<series>/``."""
    return cache_dir() / "pacs"


def pacs_annotations_path(study_uid: str, series_uid: str) -> Path:
    """Where the annotations of a PACS series are kept: the data folder, never the evictable cache."""
    return data_dir() / "pacs" / study_uid / f"{series_uid}.clinlens.json"
