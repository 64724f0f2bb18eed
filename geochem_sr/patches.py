"""Spatial blocks, patch windows and the training dataset.

Three steps turn a survey dataset into training examples:

1. :class:`BlockSplitter` cuts the grid into square blocks and gives each block where both
   surveys exist a role — train, validation or test — so that evaluation is spatially
   separate from training (never random pixels).
2. :func:`patch_index` lays ``size x size`` windows (slices, not copies) over the cells of
   one role. A window lies entirely inside cells of that role, so a training patch never
   contains a validation or test cell, overlap included.
3. :class:`PatchDataset` reads the windows of the stacked inputs
   (:func:`geochem_sr.channels.stack_inputs`) and of the target residual, and applies the
   8 rotations/flips (:func:`geochem_sr.channels.augment`) when training.

:func:`prepare_training_data` does the three in one call for the training loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.channels import (
    CHANNEL,
    N_AUGMENTATIONS,
    augment,
    channel_names,
    fit_normalisation,
    normalise,
    stack_inputs,
    target_residual,
)
from geochem_sr.errors import DataError, GridError, SchemaError

__all__ = [
    "ROLE",
    "ROLE_NONE",
    "ROLE_TRAIN",
    "ROLE_VAL",
    "ROLE_TEST",
    "ROLE_NAMES",
    "Window",
    "BlockSplitter",
    "patch_index",
    "windows_mask",
    "PatchDataset",
    "EpochSampler",
    "make_loader",
    "set_epoch",
    "TrainingData",
    "prepare_training_data",
]

#: Name of the role map returned by :meth:`BlockSplitter.split`.
ROLE = "block_role"
ROLE_NONE, ROLE_TRAIN, ROLE_VAL, ROLE_TEST = 0, 1, 2, 3
#: Role code -> name ("" = no role: no data, or a gap between blocks of different roles).
ROLE_NAMES: tuple[str, ...] = ("", "train", "val", "test")

#: A patch window: (rows, columns) of the grid, as slices.
Window = tuple[slice, slice]

_DEFAULT_MAX_BYTES = 2 * 1024**3


# =========================================================================== blocks
def _grid_shape(ds: xr.Dataset | xr.DataArray) -> tuple[int, int]:
    for dim in (schema.Y, schema.X):
        if dim not in ds.dims:
            raise SchemaError(f"dataset: expected a dimension '{dim}', found {tuple(ds.dims)}")
    return int(ds.sizes[schema.Y]), int(ds.sizes[schema.X])


def _as_map(values: np.ndarray, ds: xr.Dataset | xr.DataArray, name: str,
            attrs: dict | None = None) -> xr.DataArray:
    """Wrap a (y, x) array with the grid's coordinates and CRS."""
    coords = {schema.Y: ds[schema.Y], schema.X: ds[schema.X]}
    if schema.SPATIAL_REF in ds.coords:
        coords[schema.SPATIAL_REF] = ds[schema.SPATIAL_REF]
    return xr.DataArray(values, dims=(schema.Y, schema.X), coords=coords, name=name,
                        attrs=attrs or {})


def _coverage(ds: xr.Dataset) -> np.ndarray:
    """Cells where both surveys have a value for at least one element."""
    for var in (schema.LR, schema.HR):
        if var not in ds.data_vars:
            raise SchemaError(
                f"variable '{var}': the block split needs both surveys, '{var}' is missing "
                f"(found {sorted(map(str, ds.data_vars))})"
            )
    both = ds[schema.LR].notnull().any(schema.ELEMENT) & ds[schema.HR].notnull().any(
        schema.ELEMENT
    )
    return np.asarray(both.transpose(schema.Y, schema.X).values, dtype=bool)


def _dilate(mask: np.ndarray, gap: int) -> np.ndarray:
    """Cells within ``gap`` cells (Chebyshev distance, diagonals included) of ``mask``."""
    if gap <= 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=np.ones((2 * gap + 1, 2 * gap + 1), bool))


class BlockSplitter:
    """Split the surveyed area into spatial blocks of train / validation / test roles.

    In the spirit of verde's ``BlockKFold``/``BlockShuffleSplit``: the grid is cut into
    blocks of about ``block_size`` (the spacing is adjusted so that blocks tile the grid
    exactly, as verde's ``adjust="spacing"``), and every block holding cells where both
    surveys exist is given one role, at random (``seed``) but balanced so that the roles
    get about ``fractions`` of the surveyed cells. Every role with a non-zero fraction gets
    at least one block. A block's role covers all its cells, including those without data
    (their target is NaN and is masked out of the loss). Blocks with no surveyed cell get
    no role.

    Example, a 4 x 4 grid of blocks, ``fractions=(0.7, 0.15, 0.15)``::

        +-------+-------+-------+-------+
        | train | train |  test | train |
        +-------+-------+-------+-------+
        |  val  | train | train | train |
        +-------+-------+-------+-------+
        | train |  test | train |  val  |
        +-------+-------+-------+-------+
        | train | train |   .   |   .   |     . = no survey data: no role
        +-------+-------+-------+-------+

    Patches are taken *inside* the cells of one role only (:func:`patch_index`), so no
    validation or test cell is ever inside a training patch, with or without a gap.
    ``gap`` adds a buffer against spatial autocorrelation: cells closer than ``gap`` cells
    (diagonals included) to a block of another role lose their role, taken from the larger
    role (test keeps all its cells, validation gives way to test, train to both), so that
    exactly ``gap`` cells separate blocks of different roles::

        t t t t t . T T T T          t = train, T = test, . = gap (gap=1)
        t t t t t . T T T T
        t t t t t . . . . .
        t t t t t t t t t t

    Parameters
    ----------
    block_size : int or float
        An ``int`` is a number of cells; a ``float`` is metres (converted with the grid's
        cell size). Blocks should be at least as large as a patch, preferably several times.
    fractions : (float, float, float), default (0.7, 0.15, 0.15)
        Shares of train, validation and test cells (normalised to sum 1) for :meth:`split`.
    n_folds : int, default 5
        Default number of folds of :meth:`folds`.
    gap : int, default 0
        Width in cells of the buffer between blocks of different roles.
    seed : int, default 0
        Seed of the block assignment: same seed, same blocks.

    Examples
    --------
    On a survey dataset ``ds``::

        splitter = BlockSplitter(block_size=3200.0, gap=2, seed=0)  # 3.2 km blocks
        roles = splitter.split(ds)                  # block_role (y, x): 0/1/2/3
        train_windows = patch_index(roles == ROLE_TRAIN, size=32, stride=16)
        for train_mask, val_mask in splitter.folds(ds, 5):   # spatial 5-fold CV
            ...
    """

    def __init__(
        self,
        block_size: int | float,
        fractions: Sequence[float] = (0.7, 0.15, 0.15),
        n_folds: int = 5,
        gap: int = 0,
        seed: int = 0,
    ) -> None:
        if isinstance(block_size, bool) or not np.isscalar(block_size) or not block_size > 0:
            raise GridError(
                f"block_size: expected a positive int (cells) or float (metres), "
                f"found {block_size!r}"
            )
        fr = np.asarray(fractions, dtype=float)
        if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0 or fr[0] <= 0:
            raise GridError(
                "fractions: expected three non-negative shares (train, val, test) with "
                f"train > 0, found {tuple(fractions)}"
            )
        if int(n_folds) < 2:
            raise GridError(f"n_folds: expected at least 2 folds, found {n_folds}")
        if int(gap) < 0:
            raise GridError(f"gap: expected a non-negative number of cells, found {gap}")
        self.block_size = block_size
        self.fractions = tuple(float(f) for f in fr / fr.sum())
        self.n_folds = int(n_folds)
        self.gap = int(gap)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return (f"BlockSplitter(block_size={self.block_size!r}, fractions={self.fractions}, "
                f"n_folds={self.n_folds}, gap={self.gap}, seed={self.seed})")

    # ------------------------------------------------------------------ geometry
    def block_cells(self, ds: xr.Dataset | xr.DataArray) -> tuple[int, int]:
        """Nominal block size in cells ``(rows, columns)`` on the grid of ``ds``."""
        if isinstance(self.block_size, int | np.integer):
            return int(self.block_size), int(self.block_size)
        dx, dy = schema.check_grid(ds)
        by = max(1, round(float(self.block_size) / abs(dy)))
        bx = max(1, round(float(self.block_size) / abs(dx)))
        return by, bx

    def block_ids(self, ds: xr.Dataset | xr.DataArray) -> np.ndarray:
        """Block number of every cell, ``(y, x)`` int32, blocks numbered row by row."""
        ny, nx = _grid_shape(ds)
        by, bx = self.block_cells(ds)
        nby, nbx = max(1, round(ny / by)), max(1, round(nx / bx))
        ey = np.round(np.linspace(0, ny, nby + 1)).astype(int)
        ex = np.round(np.linspace(0, nx, nbx + 1)).astype(int)
        iy = np.searchsorted(ey, np.arange(ny), side="right") - 1
        ix = np.searchsorted(ex, np.arange(nx), side="right") - 1
        return (iy[:, None] * nbx + ix[None, :]).astype(np.int32)

    def _blocks(self, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block ids, the ids of blocks with surveyed cells, and their cell counts."""
        ids = self.block_ids(ds)
        counts = np.bincount(ids[_coverage(ds)], minlength=int(ids.max()) + 1)
        blocks = np.flatnonzero(counts > 0)
        return ids, blocks, counts[blocks]

    # ------------------------------------------------------------------ split
    def _assign(self, blocks: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Role (1..3) of each block: random order, each to the role furthest below target."""
        roles_on = [r for r in range(3) if self.fractions[r] > 0]
        if blocks.size < len(roles_on):
            raise DataError(
                f"block split: expected at least {len(roles_on)} blocks with survey data for "
                f"the roles {[ROLE_NAMES[r + 1] for r in roles_on]}, found {blocks.size}; "
                "use a smaller block_size"
            )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(blocks.size)
        target = np.asarray(self.fractions) * counts.sum()
        got = np.zeros(3)
        n_blocks = np.zeros(3, int)
        out = np.zeros(blocks.size, np.int8)
        for pos, b in enumerate(order):
            empty = [r for r in roles_on if n_blocks[r] == 0]
            pool = empty if len(empty) >= order.size - pos else roles_on
            r = max(pool, key=lambda q: (target[q] - got[q], -q))
            out[b] = r + 1
            got[r] += counts[b]
            n_blocks[r] += 1
        return out

    def _apply_gap(self, roles: np.ndarray) -> np.ndarray:
        if self.gap <= 0:
            return roles
        out = roles.copy()
        # higher code wins: test keeps its cells, val yields to test, train to both
        for r in (ROLE_VAL, ROLE_TRAIN):
            near = _dilate(roles > r, self.gap)
            out[(roles == r) & near] = ROLE_NONE
        return out

    def split(self, ds: xr.Dataset) -> xr.DataArray:
        """Role of every cell.

        Parameters
        ----------
        ds : xarray.Dataset
            A survey dataset with ``lr`` and ``hr``.

        Returns
        -------
        xarray.DataArray
            ``block_role`` ``(y, x)`` int8: 0 no role, 1 train, 2 validation, 3 test
            (``ROLE_*`` constants; CF ``flag_values``/``flag_meanings`` and a ``legend``
            attribute), with the grid's coordinates and CRS.
        """
        ids, blocks, counts = self._blocks(ds)
        block_role = np.zeros(int(ids.max()) + 1, np.int8)
        block_role[blocks] = self._assign(blocks, counts)
        roles = self._apply_gap(block_role[ids])
        by, bx = self.block_cells(ds)
        attrs = {
            "long_name": "spatial block role",
            "flag_values": [ROLE_NONE, ROLE_TRAIN, ROLE_VAL, ROLE_TEST],
            "flag_meanings": "none train val test",
            "legend": "0: no role, 1: train, 2: val, 3: test",
            "block_size_cells": [by, bx],
            "gap_cells": self.gap,
            "seed": self.seed,
        }
        return _as_map(roles, ds, ROLE, attrs)

    # ------------------------------------------------------------------ k-fold
    def folds(
        self, ds: xr.Dataset, k: int | None = None
    ) -> Iterator[tuple[xr.DataArray, xr.DataArray]]:
        """Spatial k-fold cross-validation over all surveyed blocks.

        Blocks are dealt at random (``seed``) to ``k`` folds of about equal numbers of
        surveyed cells; each fold in turn is the validation set and the others the
        training set, less the ``gap`` buffer around the validation blocks.

        Parameters
        ----------
        ds : xarray.Dataset
            A survey dataset with ``lr`` and ``hr``.
        k : int, optional
            Number of folds (default ``n_folds``).

        Yields
        ------
        (train_mask, val_mask) : xarray.DataArray
            Boolean ``(y, x)`` maps with the grid's coordinates; disjoint, and at least
            ``gap`` cells apart.
        """
        k = self.n_folds if k is None else int(k)
        if k < 2:
            raise GridError(f"k: expected at least 2 folds, found {k}")
        ids, blocks, counts = self._blocks(ds)
        if blocks.size < k:
            raise DataError(
                f"folds: expected at least k={k} blocks with survey data, found "
                f"{blocks.size}; use a smaller block_size"
            )
        rng = np.random.default_rng(self.seed)
        fold_of = np.full(int(ids.max()) + 1, -1)
        load = np.zeros(k)
        for b in rng.permutation(blocks.size):
            f = int(np.argmin(load))
            fold_of[blocks[b]] = f
            load[f] += counts[b]
        cell_fold = fold_of[ids]
        for f in range(k):
            val = cell_fold == f
            train = (cell_fold >= 0) & ~val & ~_dilate(val, self.gap)
            yield (_as_map(train, ds, "train_mask", {"fold": f}),
                   _as_map(val, ds, "val_mask", {"fold": f}))


# =========================================================================== windows
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


# =========================================================================== dataset
def _bbox(windows: Sequence[Window]) -> tuple[int, int, int, int]:
    r0 = min(w[0].start for w in windows)
    r1 = max(w[0].stop for w in windows)
    c0 = min(w[1].start for w in windows)
    c1 = max(w[1].stop for w in windows)
    return r0, r1, c0, c1


def _load(arrays: Sequence[xr.DataArray]) -> list[np.ndarray]:
    """Load DataArrays into memory, all dask graphs in one compute (shared inputs once)."""
    import dask

    return [np.asarray(a) for a in dask.compute(*[a.data for a in arrays])]


class PatchDataset(torch.utils.data.Dataset):
    """Training examples: windows of the stacked inputs and of the target residual.

    Parameters
    ----------
    inputs : xarray.DataArray
        ``(channel, y, x)`` normalised inputs (numpy or dask), coordinate ``channel`` with
        the names (used to rotate the aspect vector when augmenting).
    target : xarray.DataArray
        ``(element, y, x)`` residual ``log10(hr) - log10(lr)``, NaN where unknown.
    windows : sequence of (slice, slice)
        Windows from :func:`patch_index`, in the grid whose first cell is ``offset``.
    augment : bool, default False
        Apply a random one of the 8 rotations/flips to each example.
    seed : int, default 0
        The augmentation of example ``i`` in epoch ``e`` is drawn from
        ``numpy.random.default_rng([seed, e, i])``: same seed, same sequence, whatever
        the order or the worker that reads it. Set the epoch with :meth:`set_epoch`.
    offset : (int, int), default (0, 0)
        Grid index of the first row and column of ``inputs``/``target`` (when they are a
        crop of the grid the windows refer to).
    max_bytes : int, default 2 GiB
        The bounding box of all windows is loaded into memory once (one dask compute) on
        first use when it takes at most this many bytes; otherwise each window is read
        from the (dask) arrays when asked for.

    Notes
    -----
    An item is ``(x, y, mask)``: float32 tensors ``x (C, size, size)`` with NaN replaced by
    0 (the channel mean after normalisation), ``y (E, size, size)`` with NaN kept, and the
    bool ``mask`` of finite ``y``.
    """

    def __init__(
        self,
        inputs: xr.DataArray,
        target: xr.DataArray,
        windows: Sequence[Window],
        augment: bool = False,
        seed: int = 0,
        offset: tuple[int, int] = (0, 0),
        max_bytes: int = _DEFAULT_MAX_BYTES,
    ) -> None:
        if inputs.dims != (CHANNEL, schema.Y, schema.X):
            raise SchemaError(
                f"inputs: expected dims ('{CHANNEL}', 'y', 'x'), found {inputs.dims}"
            )
        if target.dims != (schema.ELEMENT, schema.Y, schema.X):
            raise SchemaError(f"target: expected dims ('element', 'y', 'x'), found {target.dims}")
        if inputs.shape[1:] != target.shape[1:]:
            raise GridError(
                f"target: expected the inputs' grid {inputs.shape[1:]}, found {target.shape[1:]}"
            )
        self.inputs = inputs
        self.target = target
        self.windows = list(windows)
        self.channels = [str(c) for c in inputs[CHANNEL].values]
        self.elements = [str(e) for e in target[schema.ELEMENT].values]
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.offset = (int(offset[0]), int(offset[1]))
        self.max_bytes = int(max_bytes)
        self._cache: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None = None
        ny, nx = inputs.shape[1:]
        for rows, cols in self.windows:
            r, c = rows.start - self.offset[0], cols.start - self.offset[1]
            if r < 0 or c < 0 or rows.stop - self.offset[0] > ny or cols.stop - self.offset[1] > nx:
                raise GridError(
                    f"windows: expected windows inside the {ny} x {nx} inputs at offset "
                    f"{self.offset}, found {rows}, {cols}"
                )

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations of epoch ``epoch``."""
        self.epoch = int(epoch)

    def augmentation(self, index: int) -> int:
        """The augmentation (0..7) applied to example ``index`` in the current epoch."""
        if not self.augment:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return int(rng.integers(N_AUGMENTATIONS))

    def load(self) -> None:
        """Load the windows' bounding box into memory now (done on first use anyway)."""
        if self._cache is not None or not self.windows:
            return
        r0, r1, c0, c1 = _bbox(self.windows)
        r0, r1 = r0 - self.offset[0], r1 - self.offset[0]
        c0, c1 = c0 - self.offset[1], c1 - self.offset[1]
        n = (self.inputs.shape[0] + self.target.shape[0]) * (r1 - r0) * (c1 - c0) * 4
        if n > self.max_bytes:
            return
        isel = {schema.Y: slice(r0, r1), schema.X: slice(c0, c1)}
        x, y = _load([self.inputs.isel(isel), self.target.isel(isel)])
        self._cache = (x.astype(np.float32, copy=False), y.astype(np.float32, copy=False),
                       (r0 + self.offset[0], c0 + self.offset[1]))

    def _window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.windows[index]
        self.load()
        if self._cache is not None:
            x, y, (r0, c0) = self._cache
            rs = slice(rows.start - r0, rows.stop - r0)
            cs = slice(cols.start - c0, cols.stop - c0)
            return x[:, rs, cs], y[:, rs, cs]
        rs = slice(rows.start - self.offset[0], rows.stop - self.offset[0])
        cs = slice(cols.start - self.offset[1], cols.stop - self.offset[1])
        isel = {schema.Y: rs, schema.X: cs}
        x, y = _load([self.inputs.isel(isel), self.target.isel(isel)])
        return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self._window(index)
        x, y = augment(x, y, self.augmentation(index), self.channels)  # contiguous copies
        x = np.where(np.isfinite(x), x, np.float32(0.0)).astype(np.float32, copy=False)
        y = np.asarray(y, dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.copy()), torch.from_numpy(np.isfinite(y))


class EpochSampler(torch.utils.data.Sampler):
    """Order of the examples in an epoch: a permutation drawn from ``(seed, epoch)``.

    Being a pure function of the seed and the epoch, the order needs no state to be saved
    for a training to resume exactly where it stopped.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = int(n), bool(shuffle), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader over a :class:`PatchDataset`.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Usually a :class:`PatchDataset`.
    batch_size : int, default 32
        The paper's batch size.
    shuffle : bool, default True
        Shuffle the examples each epoch (:class:`EpochSampler`).
    seed : int, default 0
        Seed of the order (and of the loader's generator, used for worker seeds).
    num_workers : int, default 0
        Loader processes. With workers, call :func:`set_epoch` before iterating and keep
        ``persistent_workers`` off so that each epoch's dataset reaches them.
    drop_last : bool, default False
        Drop a last incomplete batch.

    Returns
    -------
    torch.utils.data.DataLoader
        Call :func:`set_epoch` ``(loader, epoch)`` at the start of each epoch: order and
        augmentations then depend only on ``(seed, epoch)``.
    """
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=int(num_workers),
        drop_last=bool(drop_last),
        generator=torch.Generator().manual_seed(int(seed)),
    )


def set_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Set the epoch of a loader's sampler and dataset (order and augmentations)."""
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


# =========================================================================== one call
@dataclass
class TrainingData:
    """Everything the training loop needs, from :func:`prepare_training_data`.

    Windows index the full grid of the survey dataset (so ``ds.isel(y=rows, x=cols)``
    and :func:`geochem_sr.metrics.evaluate` with ``windows=test_windows`` work);
    ``inputs``/``target`` are the crop of the grid that holds them, starting at
    ``offset``.
    """

    inputs_set: str
    channels: list[str]
    elements: list[str]
    stats: dict[str, tuple[float, float]]
    roles: xr.DataArray
    train_windows: list[Window]
    val_windows: list[Window]
    test_windows: list[Window]
    train: PatchDataset
    val: PatchDataset
    test: PatchDataset
    inputs: xr.DataArray
    target: xr.DataArray
    offset: tuple[int, int] = (0, 0)
    patch_size: int = 32
    splitter: BlockSplitter | None = field(default=None, repr=False)


def prepare_training_data(
    ds: xr.Dataset,
    inputs: str,
    elements: Sequence[str] | None = None,
    splitter: BlockSplitter | None = None,
    patch_size: int = 32,
    stride: int = 16,
    seed: int = 0,
    min_valid: float = 0.5,
    max_bytes: int = _DEFAULT_MAX_BYTES,
) -> TrainingData:
    """Blocks, normalisation, windows and datasets in one call.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    inputs : str
        Input set: ``"geochem"``, ``"geochem+terrain"``, ``"geochem+terrain+geology"``.
    elements : sequence of str, optional
        Elements to model (default all of ``ds.element``).
    splitter : BlockSplitter, optional
        Default ``BlockSplitter(block_size=2 * patch_size, seed=seed)``.
    patch_size, stride : int, default 32, 16
        Patch windows (:func:`patch_index`).
    seed : int, default 0
        Seed of the default splitter and of the augmentations.
    min_valid : float, default 0.5
        Patches with a smaller share of known target cells are skipped.
    max_bytes : int, default 2 GiB
        The bounding box of the blocks is loaded into memory once when it fits.

    Returns
    -------
    TrainingData
        Normalisation statistics come from the training blocks only; the training
        dataset augments, validation and test do not.

    Raises
    ------
    DataError
        A role with a non-zero share gets no patch (blocks smaller than a patch, or too
        little data).
    """
    if elements is None:
        elements = [str(e) for e in ds[schema.ELEMENT].values]
    elements = [str(e) for e in elements]
    inputs = schema.resolve_inputs(inputs, ds)
    groups = schema.parse_input_set(inputs)
    n_emb = 5
    if "geology" in groups and schema.GEOLOGY_EMBEDDING in ds.data_vars:
        n_emb = int(ds.sizes[schema.EMBEDDING])
    channels = channel_names(inputs, elements, n_emb)
    splitter = splitter or BlockSplitter(block_size=2 * int(patch_size), seed=seed)

    raw = stack_inputs(ds, channels)  # raises SchemaError early on a missing variable
    target = target_residual(ds, elements)
    roles = splitter.split(ds)
    role = roles.values
    if not (role > 0).any():
        raise DataError("block split: expected blocks with a role, found none")
    rows, cols = np.flatnonzero((role > 0).any(1)), np.flatnonzero((role > 0).any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = {schema.Y: slice(r0, r1), schema.X: slice(c0, c1)}
    raw, target = raw.isel(crop), target.isel(crop)
    if (raw.shape[0] + target.shape[0]) * raw.shape[1] * raw.shape[2] * 4 <= max_bytes:
        x, y = _load([raw, target])
        raw, target = raw.copy(data=x), target.copy(data=y)

    stats = fit_normalisation(raw, role[r0:r1, c0:c1] == ROLE_TRAIN)
    norm = normalise(raw, stats)  # numpy when loaded above, else lazy (windows read later)
    valid = np.zeros(role.shape, bool)
    valid[r0:r1, c0:c1] = np.asarray(target.notnull().any(schema.ELEMENT).values)

    windows: dict[int, list[Window]] = {}
    for code, share in zip((ROLE_TRAIN, ROLE_VAL, ROLE_TEST), splitter.fractions, strict=True):
        windows[code] = patch_index(role == code, patch_size, stride, min_valid, valid)
        if share > 0 and not windows[code]:
            raise DataError(
                f"patches: expected {ROLE_NAMES[code]} patches of {patch_size} x {patch_size} "
                f"cells, found none (block size {splitter.block_cells(ds)} cells, "
                f"gap {splitter.gap}); use larger blocks or smaller patches"
            )

    def dataset(code: int, aug: bool) -> PatchDataset:
        return PatchDataset(norm, target, windows[code], augment=aug, seed=seed,
                            offset=(int(r0), int(c0)), max_bytes=max_bytes)

    return TrainingData(
        inputs_set="+".join(groups),
        channels=channels,
        elements=elements,
        stats=stats,
        roles=roles,
        train_windows=windows[ROLE_TRAIN],
        val_windows=windows[ROLE_VAL],
        test_windows=windows[ROLE_TEST],
        train=dataset(ROLE_TRAIN, True),
        val=dataset(ROLE_VAL, False),
        test=dataset(ROLE_TEST, False),
        inputs=norm,
        target=target,
        offset=(int(r0), int(c0)),
        patch_size=int(patch_size),
        splitter=splitter,
    )
