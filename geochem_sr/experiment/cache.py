"""Finished rows kept on disk, so that an interrupted run continues where it stopped.

Rows are reused only by a run with the same settings, seed, version and package source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from geochem_sr.jsonable import to_jsonable

__all__ = ["source_digest", "RowCache"]


def source_digest() -> str:
    """Digest of the package's source files: cached rows of other code are not reused."""
    import hashlib

    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]  # the geochem_sr package
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class RowCache:
    """Finished rows on disk, so that an interrupted run continues (``resume=True``).

    Parameters
    ----------
    folder : pathlib.Path
        Folder of the rows: ``<key>.json`` (the row) and ``<key>.npz`` (its figure crops).
    fingerprint : str
        Settings, seed and source digest of the run; rows of another fingerprint are
        ignored.
    enabled : bool
        False: :meth:`get` finds nothing and :meth:`put` writes nothing.
    """

    def __init__(self, folder: Path, fingerprint: str, enabled: bool) -> None:
        self.folder, self.fingerprint, self.enabled = folder, fingerprint, enabled

    def get(self, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The row and crops stored under ``key`` by a run of the same fingerprint, or None."""
        if not self.enabled:
            return None
        js, npz = self.folder / f"{key}.json", self.folder / f"{key}.npz"
        if not (js.exists() and npz.exists()):
            return None
        row = json.loads(js.read_text())
        if row.get("_fingerprint") != self.fingerprint:
            return None
        with np.load(npz) as f:
            crops = {k: f[k] for k in f.files}
        row.pop("_fingerprint")
        return row, crops

    def put(self, key: str, row: dict[str, Any], crops: dict[str, np.ndarray]) -> None:
        """Store a finished row and its crops under ``key`` (the JSON written atomically)."""
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(self.folder / f"{key}.npz", **crops)
        tmp = self.folder / f".{key}.json.tmp"
        tmp.write_text(json.dumps(to_jsonable({**row, "_fingerprint": self.fingerprint})))
        os.replace(tmp, self.folder / f"{key}.json")
