"""The payload of a model file or training checkpoint: content hashes and safe reading.

A payload is a plain dict saved with :func:`torch.save` and read back with
``weights_only=True``, so that no code from a file is ever executed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from geochem_sr.errors import ModelFileError

__all__ = ["content_hash", "checksum", "read_payload", "read_model_payload", "json_default"]


def content_hash(texts: Iterable[str], state: Mapping[str, Any]) -> str:
    """SHA-256 of some texts, then of every tensor (name, dtype, shape, bytes) by name.

    Parameters
    ----------
    texts : iterable of str
        Hashed first, in order.
    state : mapping of str -> torch.Tensor
        Weights; hashed in the order of their names.

    Returns
    -------
    str
        The hex digest.
    """
    import torch

    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checksum(fmt: str, meta_json: str, digest: str, state: Mapping[str, Any]) -> str:
    """The file checksum of a model file: a hash of every entry of its payload."""
    return content_hash([fmt, "\0", meta_json, "\0", digest, "\0"], state)


def read_payload(path: Path, fmt: str | tuple[str, ...], label: str,
                 advice: str = "") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict file whose ``"format"`` must be ``fmt``.

    Shared by model files and training checkpoints: no code from the file is executed, and
    an unreadable file or another format raises :class:`ModelFileError` naming ``label``.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    fmt : str or tuple of str
        Accepted format tags, the current one first.
    label : str
        What the messages call the file (``"model file"``, ``"checkpoint"``).
    advice : str, default ""
        Appended to the message of an unreadable file.

    Returns
    -------
    dict
        The payload.
    """
    import torch

    formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{label} '{path}': cannot be read ({exc}){advice}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        older = f" (or {', '.join(map(repr, formats[1:]))})" if len(formats) > 1 else ""
        raise ModelFileError(
            f"{label} '{path}': expected format {formats[0]!r}{older}, found {found!r}")
    return payload


def read_model_payload(path: Path, formats: tuple[str, ...], legacy: str
                       ) -> tuple[str, str, dict[str, Any], str]:
    """Read a model file and check it against its checksum.

    Parameters
    ----------
    path : pathlib.Path
        The model file.
    formats : tuple of str
        Accepted format tags, the current one first.
    legacy : str
        The format whose ``digest`` is the checksum of ``meta_json`` and the weights (the
        first format); the others carry a ``checksum`` (:func:`checksum`).

    Returns
    -------
    tuple
        ``(format, meta_json, state_dict, digest)``.

    Raises
    ------
    ModelFileError
        A missing or unreadable file, another format, missing metadata or weights, or
        content that does not match the checksum.
    """
    import torch

    where = f"model file '{path}'"
    if not path.exists():
        raise ModelFileError(f"{where}: not found")
    payload = read_payload(path, formats, "model file")
    fmt, meta_json = payload["format"], payload.get("meta_json")
    state, digest = payload.get("state_dict"), payload.get("digest")
    if not isinstance(meta_json, str) or not isinstance(state, dict):
        raise ModelFileError(f"{where}: metadata or weights missing")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{where}: weights hold values that are not tensors")
    if fmt == legacy:
        intact = content_hash([meta_json], state) == digest
    else:
        intact = isinstance(digest, str) and \
            checksum(fmt, meta_json, digest, state) == payload.get("checksum")
    if not intact:
        raise ModelFileError(
            f"{where}: content does not match its checksum (the file was modified or "
            "damaged); refusing to load it"
        )
    return fmt, meta_json, state, digest


def json_default(obj: Any) -> Any:
    """The ``default`` hook of :func:`json.dumps` for model metadata: numpy values, tuples.

    Raises
    ------
    TypeError
        For any other object (metadata must be plain data).
    """
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
