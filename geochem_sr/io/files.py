"""Small files written whole or not at all (markers, manifests, JSON records)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["write_file_atomically"]


def write_file_atomically(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to a hidden temporary sibling of ``path``, then rename it into place.

    A reader sees the old file or the new one, never a part; a crash leaves at most a hidden
    ``.<name>.tmp-<token>`` file next to it (removed when the write fails in Python).

    Parameters
    ----------
    path : path
        The file to write; its folder must exist.
    data : str or bytes
        The content (text is written as UTF-8).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
