"""Small files written whole or not at all (markers, manifests, JSON records, model files)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_file_atomically"]


def write_file_atomically(path: str | os.PathLike,
                          data: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` to a hidden temporary sibling of ``path``, then rename it into place.

    The temporary file is flushed to disk before the rename. A reader sees the old file or
    the new one, never a part; a failed write removes the temporary file and leaves ``path``
    as it was (a crash leaves at most a hidden ``.<name>.tmp-<token>`` file next to it).

    Parameters
    ----------
    path : path
        The file to write; its folder must exist.
    data : str, bytes or callable
        The content (text is written as UTF-8), or a function that writes it to the binary
        file object it is given (e.g. ``lambda fh: torch.save(obj, fh)``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OSError
        The temporary file cannot be written or renamed; any error ``data`` raises passes
        through unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return path
