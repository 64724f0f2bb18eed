"""The gridding plan (sample groups, variograms, tiles) and its computation block by block.

The numpy path loops over 512² blocks; the dask path runs one task per chunk. Tiles are
fixed on the whole grid, so each cell's result never depends on the block it is computed in.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError
from geochem_sr.gridding.estimate import idw_cells, krige_cells
from geochem_sr.gridding.kernels import single_threaded_blas
from geochem_sr.gridding.neighbours import (
    Locations,
    Neighbours,
    apply_radius,
    knn_direct,
    knn_tiles,
)
from geochem_sr.gridding.variogram import check_variogram, fit_variogram

__all__ = ["Group", "Plan", "chunk_sizes", "compute_grid", "element_variograms",
           "group_locations"]

_BLOCK = 512  # cells per side of a block in the numpy path
_BATCH_CELLS = 32768  # cells solved together (bounds the memory of one batch)
_MIN_TILE = 3  # below this tile size, query the tree per cell


@dataclass
class Group:
    """Elements valid at the same sample locations."""

    samples: Locations
    elements: list[int]  # positions in the element list
    z: np.ndarray  # (len(elements), n + 1) log10 values, 0 at the sentinel
    k: int
    pts: np.ndarray = field(default_factory=lambda: np.empty((0, 2)), repr=False)


@dataclass
class Plan:
    """Everything a chunk task needs (small: sample arrays, trees, parameters)."""

    xc: np.ndarray  # grid x relative to the origin
    yc: np.ndarray
    dx: float
    dy: float
    tile: int
    half_diag: float
    method: str
    power: float
    search_radius: float | None
    max_distance: float
    groups: list[Group]
    union: Locations
    union_group: int | None  # index of the group whose locations are the union
    variograms: list[dict[str, Any]]
    return_variance: bool
    n_el: int

    @property
    def n_out(self) -> int:
        """Output channels: concentrations, [log10 variances], coverage."""
        return self.n_el * (2 if self.return_variance else 1) + 1



def group_locations(xy: np.ndarray, z: np.ndarray, k: int, elements: list[str]
                    ) -> tuple[list[Group], Locations, int | None]:
    """Group the elements by the sample locations where they have a value.

    Parameters
    ----------
    xy : numpy.ndarray, shape (n, 2)
        Sample locations, relative to the grid origin.
    z : numpy.ndarray, shape (m, n)
        log10 values of the ``m`` elements (NaN: no value).
    k : int
        Neighbours per cell (reduced, with a warning, for a group with fewer locations).
    elements : list of str
        Element names, for messages.

    Returns
    -------
    groups : list of Group
    union : Locations
        The locations where at least one element has a value.
    union_group : int or None
        Index of the group whose locations are ``union``, if any.
    """
    valid = np.isfinite(z)
    union = valid.any(axis=0)
    xy, z, valid = xy[union], z[:, union], valid[:, union]
    union_ss = Locations(xy, cKDTree(xy))
    groups: list[Group] = []
    union_group = None
    seen: dict[bytes, int] = {}
    for e in range(len(z)):
        key = valid[e].tobytes()
        if key in seen:
            groups[seen[key]].elements.append(e)
            continue
        seen[key] = len(groups)
        m = valid[e]
        ss = union_ss if m.all() else Locations(xy[m], cKDTree(xy[m]))
        if m.all():
            union_group = len(groups)
        groups.append(Group(ss, [e], np.empty(0), 0))
    for g in groups:
        m = valid[g.elements[0]]
        n = g.samples.n
        names = [elements[e] for e in g.elements]
        if n < 3:
            raise DataError(
                f"samples {names}: expected at least 3 sample locations with values, found {n}"
            )
        if n < k:
            warnings.warn(
                f"samples {names}: {n} locations with values, fewer than k={k}; using all "
                f"{n} as the neighbourhood", UserWarning, stacklevel=3,
            )
        g.k = min(k, n)
        g.z = np.concatenate([z[g.elements][:, m], np.zeros((len(g.elements), 1))], axis=1)
        g.pts = np.vstack([g.samples.xy, [[0.0, 0.0]]])  # with the sentinel row
    return groups, union_ss, union_group


def element_variograms(groups: list[Group], elements: list[str], variogram: Any, seed: int,
                       union: Locations, spacing: float
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The variogram of each element: given (checked) or fitted on its group's samples.

    Parameters
    ----------
    groups, elements
        From :func:`group_locations`.
    variogram : dict or None
        One variogram for every element, ``{element: variogram}``, or None (all fitted).
    seed : int
        Seed of the fit's pair subsample.
    union : Locations
        All sample locations.
    spacing : float
        Their median nearest-neighbour distance (metres).

    Returns
    -------
    variograms : list of dict
        One per element, in the order of ``elements``.
    record : dict
        ``{element: variogram with "source": "given" or "fitted"}`` for the output attrs.
    """
    given: dict[str, Any] = {}
    if variogram is not None:
        if not isinstance(variogram, Mapping):
            raise DataError(f"variogram: expected a dict, found {type(variogram).__name__}")
        if "model" in variogram or "range" in variogram:
            given = {e: check_variogram(variogram, "variogram") for e in elements}
        else:
            given = {str(e): check_variogram(v, f"variogram['{e}']")
                     for e, v in variogram.items() if str(e) in elements}
    out: list[dict[str, Any]] = [{} for _ in elements]
    record: dict[str, Any] = {}
    for g in groups:
        for row, e in enumerate(g.elements):
            name = elements[e]
            if name in given:
                out[e] = given[name]
                record[name] = {**given[name], "source": "given"}
            else:
                max_lag = None
                if g.samples is union:  # the spacing is known: skip its recomputation
                    diag = float(np.hypot(*np.ptp(union.xy, axis=0)))
                    max_lag = min(0.5 * diag, 12.0 * spacing) or None
                out[e] = fit_variogram(g.samples.xy, g.z[row, :-1], seed=seed,
                                       max_lag=max_lag, name=f"variogram of '{name}'")
                record[name] = {**out[e], "source": "fitted"}
    return out, record



def _block_cells(plan: Plan, rows: np.ndarray, cols: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells of a block in tile order: flat position, global row/col, tile index; centres.

    Tiles are fixed on the whole grid (``tile`` × ``tile`` cells from the origin), so a
    cell's candidates never depend on how the grid is chunked.
    """
    t = plan.tile
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    tr0, tc0 = r0 // t, c0 // t
    nty, ntx = (r1 - 1) // t + 1 - tr0, (c1 - 1) // t + 1 - tc0
    rr = np.arange(tr0 * t, (tr0 + nty) * t).reshape(nty, t)
    shape = (nty, ntx, t, t)
    r_all = np.broadcast_to(rr[:, None, :, None], shape).ravel()
    # serpentine inside a tile: odd rows right to left, so each cell neighbours the last
    offset = np.where(np.arange(t)[:, None] % 2 == 0, np.arange(t), t - 1 - np.arange(t))
    c_all = ((tc0 + np.arange(ntx))[None, :, None, None] * t + offset[None, None]).repeat(
        nty, axis=0).ravel()
    keep = (r_all >= r0) & (r_all < r1) & (c_all >= c0) & (c_all < c1)
    r_all, c_all = r_all[keep], c_all[keep]
    tid = np.repeat(np.arange(nty * ntx), t * t)[keep]
    flat = (r_all - r0) * (c1 - c0) + (c_all - c0)
    gy, gx = np.divmod(np.arange(nty * ntx), ntx)
    centres = np.column_stack([
        plan.xc[0] + plan.dx * ((tc0 + gx) * t + (t - 1) / 2.0),
        plan.yc[0] + plan.dy * ((tr0 + gy) * t + (t - 1) / 2.0),
    ])
    return flat, r_all, c_all, tid, centres


def _neighbours(plan: Plan, ss: Locations, k: int, cxy: np.ndarray, tinv: np.ndarray,
                centres: np.ndarray) -> Neighbours:
    """k nearest samples of cells: per tile, or per cell when tiles are tiny."""
    if plan.tile < _MIN_TILE:
        return knn_direct(ss, cxy, k)
    return knn_tiles(ss, k, cxy, tinv, centres, plan.half_diag)


def _grid_block(plan: Plan, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Compute one block: (n_out, len(rows), len(cols)) float32.

    Channels: concentrations (original units), [log10 variances], coverage (0/1).
    """
    nr, nc = len(rows), len(cols)
    out = np.full((plan.n_out, nr * nc), np.nan, np.float32)
    out[-1] = 0.0
    if nr == 0 or nc == 0:
        return out.reshape(plan.n_out, nr, nc)
    flat, r_all, c_all, tid, centres = _block_cells(plan, rows, cols)
    # a tile whose centre is farther than max_distance + half-diagonal holds no covered cell
    d1c = plan.union.tree.query(centres, k=1)[0]
    alive = np.flatnonzero((d1c - plan.half_diag <= plan.max_distance)[tid])
    with single_threaded_blas():
        for start in range(0, len(alive), _BATCH_CELLS):
            cells = alive[start:start + _BATCH_CELLS]
            _grid_batch(plan, flat[cells], r_all[cells], c_all[cells], tid[cells], centres, out)
    return out.reshape(plan.n_out, nr, nc)


def _grid_batch(plan: Plan, flat: np.ndarray, r_all: np.ndarray, c_all: np.ndarray,
                tid: np.ndarray, centres: np.ndarray, out: np.ndarray) -> None:
    """Compute a batch of cells of a block into ``out`` (coverage first, then each group)."""
    cxy = np.column_stack([plan.xc[c_all], plan.yc[r_all]])
    t_lo = int(tid.min())
    present = np.zeros(int(tid.max()) - t_lo + 1, bool)
    present[tid - t_lo] = True
    tinv = (np.cumsum(present) - 1)[tid - t_lo]
    centres = centres[t_lo + np.flatnonzero(present)]
    cache: dict[int, Neighbours] = {}
    if plan.union_group is not None:
        g = plan.groups[plan.union_group]
        cache[plan.union_group] = _neighbours(plan, g.samples, g.k, cxy, tinv, centres)
        d1 = cache[plan.union_group].d1
    else:
        d1 = _neighbours(plan, plan.union, 1, cxy, tinv, centres).d1
    covered = d1 <= plan.max_distance
    out[-1, flat] = covered
    if not covered.any():
        return
    # every cell of the batch is computed (gathering the covered rows costs more than the
    # few uncovered cells of live tiles); uncovered cells are set to NaN afterwards
    for gi, g in enumerate(plan.groups):
        if gi in cache:
            nb = cache[gi]
            keep = covered
        else:
            nb = _neighbours(plan, g.samples, g.k, cxy, tinv, centres)
            keep = covered & (nb.d1 <= plan.max_distance)  # this group's own coverage
        nb = apply_radius(nb, plan.search_radius, g.samples.n)
        if plan.method == "idw":
            est, var = idw_cells(g.z, nb, plan.power), None
        else:
            vgs = [plan.variograms[e] for e in g.elements]
            est, var = krige_cells(g.pts, g.z, nb, vgs, plan.return_variance)
        drop = ~keep
        for row, e in enumerate(g.elements):
            vals = (10.0 ** est[row]).astype(np.float32)
            vals[drop] = np.nan
            out[e, flat] = vals
            if var is not None:
                v = np.maximum(var[row], 0.0).astype(np.float32)
                v[drop] = np.nan
                out[plan.n_el + e, flat] = v


def chunk_sizes(grid: xr.Dataset, chunks: int | Mapping[str, int] | None
                ) -> tuple[int, int] | None:
    """The (y, x) chunk sizes of a lazy result, or None to compute now.

    ``chunks`` None takes the grid's own chunks when it is dask-backed; ``-1`` or None for
    an axis means the whole axis.
    """
    if chunks is None:
        sizes = grid.chunksizes if grid.chunks else {}
        if schema.Y in sizes or schema.X in sizes:
            cy = sizes.get(schema.Y, (grid.sizes[schema.Y],))[0]
            cx = sizes.get(schema.X, (grid.sizes[schema.X],))[0]
            return int(cy), int(cx)
        return None
    if isinstance(chunks, Mapping):
        cy = chunks.get(schema.Y, _BLOCK)
        cx = chunks.get(schema.X, _BLOCK)
    else:
        cy = cx = chunks
    cy = grid.sizes[schema.Y] if cy in (-1, None) else int(cy)
    cx = grid.sizes[schema.X] if cx in (-1, None) else int(cx)
    if cy < 1 or cx < 1:
        raise ParameterError(f"chunks: expected positive sizes, found {chunks!r}")
    return cy, cx


def compute_grid(plan: Plan, ny: int, nx: int, sizes: tuple[int, int] | None) -> Any:
    """All cells of the plan: (n_out, ny, nx) float32, a numpy array or (with ``sizes``) a
    dask array of one task per chunk."""
    if sizes is None:
        data = np.empty((plan.n_out, ny, nx), np.float32)
        for r0 in range(0, ny, _BLOCK):
            for c0 in range(0, nx, _BLOCK):
                rows = np.arange(r0, min(r0 + _BLOCK, ny))
                cols = np.arange(c0, min(c0 + _BLOCK, nx))
                data[:, r0:r0 + len(rows), c0:c0 + len(cols)] = _grid_block(plan, rows, cols)
        return data
    import dask
    import dask.array as da
    from dask.base import tokenize

    token = tokenize(
        [(g.samples.xy, g.z, g.k, g.elements) for g in plan.groups], plan.xc, plan.yc,
        plan.method, plan.power, plan.search_radius, plan.max_distance,
        json.dumps(plan.variograms, sort_keys=True), plan.return_variance, sizes,
    )
    plan_d = dask.delayed(plan, name=f"grid-plan-{token}", traverse=False)
    rows = da.arange(ny, chunks=sizes[0])
    cols = da.arange(nx, chunks=sizes[1])
    with warnings.catch_warnings():  # one output chunk per (y, x) pair is the point
        warnings.simplefilter("ignore", da.PerformanceWarning)
        return da.blockwise(
            _grid_block_task, "vyx", plan_d, None, rows, "y", cols, "x",
            new_axes={"v": plan.n_out}, dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32), name=f"grid-samples-{token}",
        )


def _grid_block_task(plan: Plan, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """One dask chunk (see :func:`_grid_block`)."""
    return _grid_block(plan, rows, cols)
