"""Neighbour selection: the ``k`` nearest samples of cells or points, as index arrays.

Cells grouped in tiles share one tree query for their candidates (see
:func:`knn_tiles`); rows hold sample indices in ascending order, with a hash key per row
so that cells with the same neighbour set can be found fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from geochem_sr.gridding.kernels import compiled_kernels

__all__ = ["Locations", "Neighbours", "apply_radius", "knn_direct", "knn_tiles"]

_CANDIDATE_FACTOR = 3  # a tile queries 3k + 8 samples; a ball holding more: per-cell queries


@dataclass
class Locations:
    """Unique sample locations (of one element group, or all), with their k-d tree."""

    xy: np.ndarray  # (n, 2), coordinates relative to the grid origin
    tree: cKDTree = field(repr=False)

    @property
    def n(self) -> int:
        """Number of locations."""
        return len(self.xy)


@dataclass
class Neighbours:
    """k nearest samples of cells: indices ascending (sentinels last), distances, set keys."""

    idx: np.ndarray  # (c, k) int64
    d: np.ndarray  # (c, k) float64
    key: np.ndarray  # (c,) uint64 hash of the row
    d1: np.ndarray  # (c,) distance to the nearest sample


_HASH_CACHE: dict[int, np.ndarray] = {}


def _hash_mult(k: int) -> np.ndarray:
    """Fixed odd random multipliers of the ``k`` columns of a neighbour row."""
    if k not in _HASH_CACHE:
        mult = np.random.default_rng(20250826).integers(1, 2**62, size=k, dtype=np.uint64)
        _HASH_CACHE[k] = mult * np.uint64(2) + np.uint64(1)
    return _HASH_CACHE[k]


def _hash_rows(idx: np.ndarray) -> np.ndarray:
    """Hash key of each neighbour row (equal rows, equal keys)."""
    return (idx.astype(np.uint64) * _hash_mult(idx.shape[1])).sum(axis=1, dtype=np.uint64)


def knn_direct(ss: Locations, q: np.ndarray, k: int) -> Neighbours:
    """k nearest samples of each query point by tree queries, in ascending sample index."""
    d, idx = ss.tree.query(q, k=k)
    d, idx = d.reshape(len(q), k), idx.reshape(len(q), k).astype(np.int64)
    order = np.argsort(idx, axis=1, kind="stable")
    idx, d = np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)
    return Neighbours(idx, d, _hash_rows(idx), d.min(axis=1))


def knn_tiles(ss: Locations, k: int, cxy: np.ndarray, tinv: np.ndarray, centres: np.ndarray,
              h: float) -> Neighbours:
    """k nearest samples of cells grouped in tiles (one tree query per tile).

    A cell ``p`` of a tile with centre ``c`` and half-diagonal ``h`` has its k nearest
    within ``d_k(p) <= d_k(c) + h`` of it, hence within ``d_k(c) + 2h`` of ``c``: those
    are the tile's candidates, found among the centre's ``K`` nearest samples (a tile whose
    ball holds more than ``K`` samples falls back to per-cell queries).
    """
    n = len(cxy)
    out = Neighbours(np.empty((n, k), np.int64), np.empty((n, k), np.float64),
                      np.empty(n, np.uint64), np.empty(n, np.float64))
    n_query = min(ss.n, max(_CANDIDATE_FACTOR * k + 8, k + 1))
    dc, ic = ss.tree.query(centres, k=n_query)
    dc, ic = dc.reshape(len(centres), n_query), ic.reshape(len(centres), n_query)
    radius = dc[:, k - 1] * (1 + 1e-9) + 2.0 * h + 1e-9
    inside = dc <= radius[:, None]
    big = inside[:, -1] & (n_query < ss.n)  # the ball may hold more samples than queried
    if big.any():  # clustered samples: per-cell queries for these tiles
        cells = np.flatnonzero(big[tinv])
        nb = knn_direct(ss, cxy[cells], k)
        out.idx[cells], out.d[cells], out.key[cells], out.d1[cells] = nb.idx, nb.d, nb.key, nb.d1
    cells = np.flatnonzero(~big[tinv])
    if len(cells):
        cand = np.sort(np.where(inside, ic, ss.n), axis=1)  # ascending sample index
        n_cand = np.where(big, 0, inside.sum(axis=1))
        width = int(n_cand.max())
        cand = np.ascontiguousarray(cand[:, :width])
        pts = np.vstack([ss.xy, [[np.inf, np.inf]]])
        all_cells = len(cells) == n
        sub = out if all_cells else Neighbours(
            np.empty((len(cells), k), np.int64), np.empty((len(cells), k), np.float64),
            np.empty(len(cells), np.uint64), np.empty(len(cells), np.float64))
        cx = cxy[:, 0] if all_cells else cxy[cells, 0]
        cy = cxy[:, 1] if all_cells else cxy[cells, 1]
        compiled_kernels()["select"](
            np.ascontiguousarray(cx), np.ascontiguousarray(cy),
            np.ascontiguousarray(tinv if all_cells else tinv[cells], dtype=np.int64),
            cand, pts[cand, 0], pts[cand, 1], n_cand.astype(np.int64), k,
            _hash_mult(k), sub.idx, sub.d, sub.key, sub.d1,
        )
        if not all_cells:
            out.idx[cells], out.d[cells], out.key[cells], out.d1[cells] = (
                sub.idx, sub.d, sub.key, sub.d1)
    return out


def apply_radius(nb: Neighbours, radius: float | None, sentinel: int) -> Neighbours:
    """Replace neighbours beyond ``radius`` by a sentinel placed last in each row."""
    if radius is None:
        return nb
    far = nb.d > radius
    if not far.any():
        return nb
    idx = np.where(far, sentinel, nb.idx)
    d = np.where(far, np.inf, nb.d)
    order = np.argsort(idx, axis=1, kind="stable")
    idx, d = np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)
    return Neighbours(idx, d, _hash_rows(idx), nb.d1)
