"""Spatial blocks: :class:`BlockSplitter` and the block-role codes.

The grid is cut into square blocks, and each block where both surveys exist gets a role
(train, validation or test), so that evaluation is spatially separate from training. The
role codes (``ROLE_*``, :data:`ROLE_NAMES`, :data:`ROLE_CODES`) are defined here only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import xarray as xr
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.errors import DataError, GridError, SchemaError

__all__ = [
    "ROLE",
    "ROLE_NONE",
    "ROLE_TRAIN",
    "ROLE_VAL",
    "ROLE_TEST",
    "ROLE_NAMES",
    "ROLE_CODES",
    "SPLIT_ATTRS",
    "BlockSplitter",
    "leakage_gap",
    "leakage_attrs",
]

#: Name of the role map returned by :meth:`BlockSplitter.split`.
ROLE = "block_role"
ROLE_NONE, ROLE_TRAIN, ROLE_VAL, ROLE_TEST = 0, 1, 2, 3
#: Role code -> name ("" = no role: no data, or a gap between blocks of different roles).
ROLE_NAMES: tuple[str, ...] = ("", "train", "val", "test")
#: Role name -> code, for the three roles (train, val, test).
ROLE_CODES: dict[str, int] = {"train": ROLE_TRAIN, "val": ROLE_VAL, "test": ROLE_TEST}
#: Attributes of a role map that describe the split (kept by copies and model records).
SPLIT_ATTRS: tuple[str, ...] = ("block_size_cells", "gap_cells", "seed", "leakage_gap_cells",
                                "hr_reach_m")


def leakage_gap(ds: xr.Dataset) -> int | None:
    """Cells between blocks of different roles so that no training target uses a dense
    sample inside a held-out block; ``None`` when ``ds`` does not record the reach.

    The dense map of a cell uses samples up to ``ds.attrs[schema.ATTR_HR_REACH]`` metres
    away (:func:`geochem_sr.gridding.neighbourhood_reach`, recorded by
    :func:`geochem_sr.build_survey`). A training cell more than ``gap`` cells (Chebyshev)
    from every held-out cell is at least ``(gap + 1/2) * cell`` from any point of a held-out
    cell, so ``gap = ceil(reach / cell)`` keeps every held-out sample out of its reach (the
    larger of the two cell sides, for cells that are not square).

    Raises
    ------
    SchemaError, GridError
        ``ds`` records the reach but is not on a regular grid (:func:`schema.check_grid`).

    Examples
    --------
    >>> ds = schema.make_grid((0, 0, 1000, 1000), 50.0, "EPSG:32650")
    >>> leakage_gap(ds.assign_attrs({schema.ATTR_HR_REACH: 480.0}))
    10
    """
    reach = ds.attrs.get(schema.ATTR_HR_REACH)
    if reach is None:
        return None
    dx, dy = schema.check_grid(ds)
    return int(np.ceil(float(reach) / max(dx, abs(dy))))


def leakage_attrs(ds: xr.Dataset | xr.DataArray) -> dict[str, float | int]:
    """``leakage_gap_cells`` and ``hr_reach_m`` of ``ds``, for a role map's attributes
    (empty when ``ds`` does not record the reach)."""
    gap = leakage_gap(ds) if isinstance(ds, xr.Dataset) else None
    if gap is None:
        return {}
    return {"leakage_gap_cells": gap, "hr_reach_m": float(ds.attrs[schema.ATTR_HR_REACH])}


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

    Patches are taken *inside* the cells of one role only
    (:func:`~geochem_sr.sampling.windows.patch_index`), so no
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
            attribute, ``gap_cells``, and ``leakage_gap_cells``/``hr_reach_m`` when ``ds``
            records the dense map's reach), with the grid's coordinates and CRS.
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
            **leakage_attrs(ds),
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
