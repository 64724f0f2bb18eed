"""Compiled kernels that need no variogram (plain Python here; numba-jitted).

The k-nearest selection of cells among their tile's candidates, the distinct neighbour
sets of cells, and inverse-distance weighting. :data:`KERNELS` names them for
:func:`~geochem_sr.gridding.kernels.compiled_kernels`, which jits them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["KERNELS"]


def _py_select(cell_x, cell_y, cell_tile, cand, cand_x, cand_y, n_cand, k, mult,  # noqa: ANN001, ANN202
               out_idx, out_d, out_key, out_d1):
    """k nearest of each cell among its tile's candidates (sorted by sample index).

    Order is (distance, index): ties go to the lower sample index. Rows come out in
    ascending sample index, with the set's hash key and the nearest distance. The first cell
    of a tile selects by quickselect; the next cells (visited in serpentine order, so each
    is next to the previous one) repair the previous cell's set by swaps.
    """
    width = cand.shape[1]
    d2 = np.empty(width, np.float64)
    perm = np.empty(width, np.int64)
    chosen = np.zeros(width, np.bool_)
    prev_tile = -1
    for i in range(cell_x.shape[0]):
        t = cell_tile[i]
        nc = n_cand[t]
        for j in range(nc):
            dx = cand_x[t, j] - cell_x[i]
            dy = cand_y[t, j] - cell_y[i]
            d2[j] = dx * dx + dy * dy
        if t == prev_tile:
            # repair the previous cell's set: while the largest chosen (d2, j) exceeds the
            # smallest other, swap them (each swap fixes two wrong memberships)
            while True:  # largest chosen key (d2, j) and smallest other key
                in_d, in_j, out_dd, out_j = -1.0, -1, np.inf, nc
                for j in range(nc):
                    dj = d2[j]
                    if chosen[j]:
                        if dj >= in_d:
                            in_d = dj
                            in_j = j
                    elif dj < out_dd:
                        out_dd = dj
                        out_j = j
                if out_j == nc or in_d < out_dd or (in_d == out_dd and in_j < out_j):
                    break
                chosen[in_j] = False
                chosen[out_j] = True
        else:
            for j in range(nc):
                perm[j] = j
            lo, hi, want = 0, nc - 1, k - 1  # quickselect of the k-th smallest (d2, j)
            while lo < hi:
                pj = perm[(lo + hi) // 2]
                pd = d2[pj]
                a, b = lo, hi
                while a <= b:
                    while d2[perm[a]] < pd or (d2[perm[a]] == pd and perm[a] < pj):
                        a += 1
                    while d2[perm[b]] > pd or (d2[perm[b]] == pd and perm[b] > pj):
                        b -= 1
                    if a <= b:
                        tmp = perm[a]
                        perm[a] = perm[b]
                        perm[b] = tmp
                        a += 1
                        b -= 1
                if want <= b:
                    hi = b
                elif want >= a:
                    lo = a
                else:
                    break
            kth = perm[want]
            td = d2[kth]
            for j in range(nc):
                chosen[j] = d2[j] < td or (d2[j] == td and j <= kth)
            prev_tile = t
        m = 0
        key = np.uint64(0)
        best = np.inf
        for j in range(nc):
            if chosen[j]:
                s = cand[t, j]
                out_idx[i, m] = s
                out_d[i, m] = np.sqrt(d2[j])
                key += np.uint64(s) * mult[m]
                if d2[j] < best:
                    best = d2[j]
                m += 1
        out_key[i] = key
        out_d1[i] = np.sqrt(best)


def _py_idw(idx, d, z, sentinel, power, eps, est):  # noqa: ANN001, ANN202
    """Inverse-distance weights over the neighbours; exact at a coincident sample."""
    n, k = idx.shape
    m = z.shape[0]
    for c in range(n):
        hit = -1
        for j in range(k):
            if idx[c, j] != sentinel and d[c, j] <= eps:
                hit = idx[c, j]
                break
        if hit >= 0:
            for e in range(m):
                est[e, c] = z[e, hit]
            continue
        den = 0.0
        for e in range(m):
            est[e, c] = 0.0
        for j in range(k):
            s = idx[c, j]
            if s == sentinel:
                continue
            dj = d[c, j]
            if power == 2.0:
                w = 1.0 / (dj * dj)
            elif power == 1.0:
                w = 1.0 / dj
            else:
                w = 1.0 / dj**power
            den += w
            for e in range(m):
                est[e, c] += w * z[e, s]
        for e in range(m):
            est[e, c] = est[e, c] / den if den > 0 else np.nan


def _py_set_ids(idx, key, first, inv):  # noqa: ANN001, ANN202
    """Distinct rows of ``idx`` (open-addressing table on ``key``, rows compared exactly).

    Returns the number of sets; ``first[s]`` is a cell of set ``s``, ``inv[c]`` the set of
    cell ``c`` (sets numbered in order of first appearance).
    """
    n, k = idx.shape
    size = 1
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int64)
    n_sets = 0
    for c in range(n):
        slot = np.int64(key[c] & mask)
        while True:
            s = table[slot]
            if s < 0:
                table[slot] = n_sets
                first[n_sets] = c
                inv[c] = n_sets
                n_sets += 1
                break
            r = first[s]
            same = key[r] == key[c]
            if same:
                for j in range(k):
                    if idx[r, j] != idx[c, j]:
                        same = False
                        break
            if same:
                inv[c] = s
                break
            slot = (slot + 1) % size
    return n_sets


#: Kernel name -> plain-Python kernel, jitted by
#: :func:`~geochem_sr.gridding.kernels.compiled_kernels`.
KERNELS: dict[str, Callable[..., Any]] = {
    "select": _py_select, "set_ids": _py_set_ids, "idw": _py_idw,
}
