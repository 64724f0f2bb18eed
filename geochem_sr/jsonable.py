"""Plain JSON values from numpy scalars and arrays, tuples, sets, paths and nested mappings.

Bottom layer: imports nothing of the package (only numpy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into values :func:`json.dumps` writes as strict JSON.

    Mappings become dicts with string keys, and lists, tuples, sets and numpy arrays become
    lists, converted recursively. Numpy scalars become Python scalars, non-finite floats
    become None, paths and any other object their ``str``. Also usable as the ``default``
    hook of :func:`json.dumps`.

    Parameters
    ----------
    obj : object
        Value to convert.

    Returns
    -------
    object
        A dict, list, str, int, float, bool or None.

    Examples
    --------
    >>> from pathlib import Path
    >>> to_jsonable({"a": (np.float32(1.5), float("nan")), 2: Path("x")})
    {'a': [1.5, None], '2': 'x'}
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int | str | bool) or obj is None:
        return obj
    return str(obj)
