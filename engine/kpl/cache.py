"""On-disk cache of CLIP features, so a second run over the same images skips encoding.

One SQLite file per model namespace (``LoadedClip.cache_namespace``: weights, preprocessing,
precision) under ``engine.paths.cache_dir()/kpl-features`` (``CLINLENS_CACHE_DIR`` moves it).
Keys name the input exactly: an image's key hashes its file content, frame and display window;
a prompt's key hashes its text. A connection per call keeps it safe from any thread.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from engine.paths import cache_dir

_CHUNK = 500


def default_cache_root() -> Path:
    return cache_dir() / "kpl-features"


def text_key(prompt: str) -> str:
    return hashlib.sha256(b"text\0" + prompt.encode("utf-8")).hexdigest()


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def _connect(self, namespace: str) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.root / f"{namespace}.sqlite", timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        return con

    def get(self, namespace: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached float32 vectors for the keys that have one."""
        found: dict[str, np.ndarray] = {}
        if not keys:
            return found
        con = self._connect(namespace)
        try:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, blob in con.execute(f"SELECT key, vector FROM features WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        finally:
            con.close()
        return found

    def put(self, namespace: str, items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in pairs]
        if not rows:
            return
        con = self._connect(namespace)
        try:
            with con:
                con.executemany("INSERT OR REPLACE INTO features (key, vector) VALUES (?, ?)", rows)
        finally:
            con.close()
