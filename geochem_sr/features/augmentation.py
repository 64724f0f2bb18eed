"""Augmentation: the 8 rotations/flips of a patch, turning the aspect vectors with the map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from geochem_sr.errors import ParameterError
from geochem_sr.features.names import VECTOR_PAIRS

__all__ = ["N_AUGMENTATIONS", "augment", "inverse_augmentation"]

#: Number of distinct rotations/flips of a square patch (the dihedral group D4).
N_AUGMENTATIONS = 8


def _check_k(k: int) -> int:
    if not 0 <= int(k) < N_AUGMENTATIONS:
        raise ParameterError(f"k: expected an augmentation index in 0..7, found {k}")
    return int(k)


def inverse_augmentation(k: int) -> int:
    """The index ``j`` such that ``augment(augment(x, k), j) == x``.

    Transform ``k`` is a mirror (for ``k >= 4``) followed by ``k % 4`` quarter turns;
    mirrors are their own inverse, a rotation by ``r`` is undone by ``4 - r``.
    """
    k = _check_k(k)
    return k if k >= 4 else (4 - k) % 4


def _spatial(a: Any, k: int) -> Any:
    """Mirror left-right if ``k >= 4``, then ``k % 4`` counter-clockwise quarter turns."""
    import torch

    if isinstance(a, torch.Tensor):
        if k >= 4:
            a = torch.flip(a, dims=(-1,))
        return torch.rot90(a, k % 4, dims=(-2, -1)).contiguous()
    a = np.asarray(a)
    if k >= 4:
        a = a[..., ::-1]
    return np.ascontiguousarray(np.rot90(a, k % 4, axes=(-2, -1)))


def _rotate_vector(east: Any, north: Any, k: int) -> tuple[Any, Any]:
    """Transform an (east, north) vector field's components like the map.

    With row 0 north and column 0 west, the left-right mirror turns east into west
    (``e -> -e``), and a counter-clockwise quarter turn of the array turns the map
    counter-clockwise, taking east to north: ``(e, n) -> (-n, e)``.
    """
    if k >= 4:
        east = -east
    for _ in range(k % 4):
        east, north = -north, east
    return east, north


def augment(
    x: Any,
    y: Any = None,
    k: int = 0,
    channels: Sequence[str] | None = None,
) -> tuple[Any, Any]:
    """Apply one of the 8 rotations/flips to an input and its target.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Inputs ``(..., C, H, W)`` (row 0 north, column 0 west).
    y : numpy.ndarray or torch.Tensor, optional
        Target ``(..., E, H, W)``, transformed with the same spatial map.
    k : int
        0..7: ``k >= 4`` mirrors left-right first, then ``k % 4`` counter-clockwise quarter
        turns (``k = 0`` is the identity). The 8 are distinct for square patches.
    channels : sequence of str, optional
        Names of the ``C`` input channels. When they include ``aspect_sin`` and
        ``aspect_cos`` (eastness, northness of the downslope direction), the vector is
        turned and mirrored with the map, so the result is what the terrain code would
        compute on the rotated DEM. The other channels are scalar fields.

    Returns
    -------
    (x, y)
        New arrays of the same kind (numpy arrays are contiguous copies); ``y`` is None
        when not given.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8, dtype="float32").reshape(2, 2, 2)
    >>> x2, _ = augment(x, None, 1, ["lr:As", "slope"])
    >>> bool((augment(x2, None, inverse_augmentation(1), ["lr:As", "slope"])[0] == x).all())
    True
    """
    k = _check_k(k)
    xs = _spatial(x, k)
    ys = None if y is None else _spatial(y, k)
    if channels is None:
        return xs, ys
    channels = [str(c) for c in channels]
    if len(channels) != xs.shape[-3]:
        raise ParameterError(
            f"channels: expected {xs.shape[-3]} names (the channel axis of x), "
            f"found {len(channels)}"
        )
    out = xs
    for pair in VECTOR_PAIRS:
        has = [c in channels for c in pair]
        if any(has) and not all(has):
            raise ParameterError(
                f"channels: an aspect vector needs both {pair} to be rotated, found {channels}"
            )
        if all(has) and k != 0:
            i_e, i_n = channels.index(pair[0]), channels.index(pair[1])
            east, north = _rotate_vector(xs[..., i_e, :, :], xs[..., i_n, :, :], k)
            if out is xs:  # read from xs, write into one copy
                out = xs.clone() if hasattr(xs, "clone") else xs.copy()
            out[..., i_e, :, :], out[..., i_n, :, :] = east, north
    return out, ys
