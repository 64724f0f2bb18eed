"""Patch windows: ``size x size`` windows (slices, not copies) inside the cells of one role.

A window lies entirely inside the mask it is laid on, so a training patch never contains a
validation or test cell, overlap included.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy import ndimage

from geochem_sr.errors import GridError

__all__ = ["Window", "patch_index", "windows_mask", "windows_bbox"]

#: A patch window: (rows, columns) of the grid, as slices.
Window = tuple[slice, slice]


def windows_bbox(windows: Sequence[Window]) -> tuple[int, int, int, int]:
    """The rows ``r0:r1`` and columns ``c0:c1`` that hold every window.

    Parameters
    ----------
    windows : sequence of Window
        At least one window.

    Returns
    -------
    tuple of int
        ``(r0, r1, c0, c1)``.

    Examples
    --------
    >>> windows_bbox([(slice(4, 8), slice(0, 4)), (slice(2, 6), slice(3, 7))])
    (2, 8, 0, 7)
    """
    r0 = min(w[0].start for w in windows)
    r1 = max(w[0].stop for w in windows)
    c0 = min(w[1].start for w in windows)
    c1 = max(w[1].stop for w in windows)
    return r0, r1, c0, c1


def _integral(a: np.ndarray) -> np.ndarray:
    s = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(a, axis=0, dtype=np.int64), axis=1, out=s[1:, 1:])
    return s


def _window_sums(a: np.ndarray, size: int) -> np.ndarray:
    """Sum of ``a`` in every ``size x size`` window, indexed by its top-left cell."""
    s = _integral(a)
    return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]


def _reach(starts: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Cells covered by at least one window whose top-left cell is True in ``starts``."""
    full = np.zeros(shape, bool)
    full[: starts.shape[0], : starts.shape[1]] = starts
    s = _integral(full)
    i1 = np.arange(shape[0])[:, None] + 1
    j1 = np.arange(shape[1])[None, :] + 1
    i0, j0 = np.maximum(i1 - size, 0), np.maximum(j1 - size, 0)
    return (s[i1, j1] - s[i0, j1] - s[i1, j0] + s[i0, j0]) > 0


def _component_windows(
    region: np.ndarray, valid: np.ndarray, size: int, stride: int, min_valid: float
) -> tuple[list[tuple[int, int]], int]:
    """Top-left cells of windows covering one connected region; and its uncoverable count."""
    h, w = region.shape
    if h < size or w < size:
        return [], int(region.sum())
    area = size * size
    fits = _window_sums(region, size) == area
    ok = fits & (_window_sums(valid & region, size) >= min_valid * area)
    n_narrow = int((region & ~_reach(fits, region.shape, size)).sum())
    todo = region & valid & _reach(ok, region.shape, size)
    starts = [(a, b) for a in range(0, h - size + 1, stride)
              for b in range(0, w - size + 1, stride) if ok[a, b]]
    for a, b in starts:
        todo[a:a + size, b:b + size] = False
    while todo.any():  # shift windows inward to reach the cells the regular grid missed
        i, j = divmod(int(np.argmax(todo)), w)
        a0, b0 = max(0, i - size + 1), max(0, j - size + 1)
        cand = ok[a0:min(i, h - size) + 1, b0:min(j, w - size) + 1]
        ra = int(np.flatnonzero(cand.any(axis=1))[-1])
        rb = int(np.flatnonzero(cand[ra])[-1])
        a, b = a0 + ra, b0 + rb
        starts.append((a, b))
        todo[a:a + size, b:b + size] = False
    return starts, n_narrow


def patch_index(
    mask: np.ndarray | xr.DataArray,
    size: int = 32,
    stride: int = 16,
    min_valid: float = 0.5,
    valid: np.ndarray | xr.DataArray | None = None,
) -> list[Window]:
    """Patch windows inside the True cells of ``mask``.

    Windows start on a regular grid of step ``stride`` in each connected part of the mask;
    where that grid leaves cells uncovered (at the far edges), windows are shifted inward
    until every cell is covered — edge patches are never dropped.

    Parameters
    ----------
    mask : array-like of bool ``(y, x)``
        Cells a window may contain, e.g. ``roles == ROLE_TRAIN``. Every window lies
        entirely inside it, so windows never straddle blocks of another role.
    size : int, default 32
        Window side in cells.
    stride : int, default 16
        Step between regular windows (``stride < size`` overlaps them).
    min_valid : float, default 0.5
        Windows with a smaller share of ``valid`` cells are skipped.
    valid : array-like of bool ``(y, x)``, optional
        Cells whose target is known (e.g. ``target.notnull().any("element")``); default
        the whole mask.

    Returns
    -------
    list of (slice, slice)
        ``(rows, columns)`` windows of the grid, sorted; index arrays with
        ``a[..., rows, cols]`` (numpy basic indexing: a view, no copy).

    Notes
    -----
    Every valid cell of the mask is inside at least one window, except cells (a) in parts
    of the mask narrower than ``size`` in either direction — blocks smaller than a patch
    are *skipped, with a warning* (no padding: padding would bring in cells of another
    role or from beyond the grid) — and (b) cells whose every containing window has less
    than ``min_valid`` valid cells (at the edge of the survey coverage; silent).
    """
    m = np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask, dtype=bool)
    if m.ndim != 2:
        raise GridError(f"mask: expected a 2-D (y, x) array, found shape {m.shape}")
    if valid is None:
        v = m
    else:
        v = np.asarray(valid.values if isinstance(valid, xr.DataArray) else valid, dtype=bool)
        if v.shape != m.shape:
            raise GridError(f"valid: expected the mask's shape {m.shape}, found {v.shape}")
    size, stride = int(size), int(stride)
    if size < 1 or stride < 1:
        raise GridError(f"size, stride: expected positive cells, found {size}, {stride}")
    if not 0.0 <= float(min_valid) <= 1.0:
        raise GridError(f"min_valid: expected a share in [0, 1], found {min_valid}")
    labels, _ = ndimage.label(m)
    windows: list[Window] = []
    n_narrow = 0
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        region = labels[sl] == lab
        starts, narrow = _component_windows(region, v[sl], size, stride, float(min_valid))
        n_narrow += narrow
        r0, c0 = sl[0].start, sl[1].start
        windows += [(slice(r0 + a, r0 + a + size), slice(c0 + b, c0 + b + size))
                    for a, b in starts]
    if n_narrow:
        warnings.warn(
            f"patch_index: {n_narrow} cells of the mask lie in parts narrower than the patch "
            f"size ({size} cells) and are in no patch; use larger blocks or smaller patches",
            stacklevel=2,
        )
    starts = sorted({(w[0].start, w[1].start) for w in windows})
    return [(slice(r, r + size), slice(c, c + size)) for r, c in starts]


def windows_mask(windows: Sequence[Window], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(y, x)`` map of the cells inside at least one window."""
    out = np.zeros(shape, bool)
    for rows, cols in windows:
        out[rows, cols] = True
    return out
