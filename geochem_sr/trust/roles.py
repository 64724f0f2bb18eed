"""Spatial block roles for trust: fixed roles as a splitter, the default blocks of the
cross-validation, the roles a model was trained with, and the block id of every cell."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ModelMismatchError, SchemaError
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import (
    ROLE_NAMES,
    ROLE_NONE,
    ROLE_TEST,
    ROLE_TRAIN,
    ROLE_VAL,
    SPLIT_ATTRS,
    BlockSplitter,
    default_block_size,
    leakage_gap,
    patch_index,
)

__all__ = ["RolesSplitter", "block_ids", "default_blocks", "evidence_blocks", "held_out_windows",
           "roles_array", "training_roles"]


class RolesSplitter:
    """A splitter that returns fixed block roles, for :func:`geochem_sr.training.train`.

    :func:`geochem_sr.sampling.prepare_training_data` asks its ``splitter`` for the role of
    every cell (``split(ds)``); this one answers with roles computed elsewhere (e.g. one
    fold of a cross-validation, or roles drawn by hand).

    Parameters
    ----------
    roles : xarray.DataArray
        ``(y, x)`` integer roles: 0 none, 1 train, 2 validation, 3 test (the
        ``geochem_sr.sampling.ROLE_*`` codes), on the grid of the datasets it will split.
        Attributes ``block_size_cells``, ``gap_cells`` and ``seed`` are kept when present.

    Attributes
    ----------
    fractions : tuple of float
        Shares of train, validation and test cells.
    gap, seed : int
        From the roles' attributes (0 when absent).
    """

    def __init__(self, roles: xr.DataArray) -> None:
        if not isinstance(roles, xr.DataArray) or roles.dims != (schema.Y, schema.X):
            raise SchemaError(
                "roles: expected an xarray.DataArray with dims ('y', 'x'), found "
                f"{getattr(roles, 'dims', type(roles).__name__)}"
            )
        codes = np.asarray(roles.values)
        if not np.issubdtype(codes.dtype, np.integer):
            raise SchemaError(f"roles: expected integer role codes, found {codes.dtype}")
        bad = np.setdiff1d(np.unique(codes), [ROLE_NONE, ROLE_TRAIN, ROLE_VAL, ROLE_TEST])
        if bad.size:
            raise SchemaError(f"roles: expected codes 0, 1, 2, 3, found {bad.tolist()}")
        counts = np.array([(codes == c).sum() for c in (ROLE_TRAIN, ROLE_VAL, ROLE_TEST)], float)
        if counts[0] == 0:
            raise DataError("roles: expected training cells (code 1), found none")
        self.roles = roles.astype(np.int8)
        self.fractions = tuple(float(c) for c in counts / counts.sum())
        self.gap = int(roles.attrs.get("gap_cells", 0))
        self.seed = int(roles.attrs.get("seed", 0))
        size = roles.attrs.get("block_size_cells")
        self._block = tuple(int(v) for v in np.atleast_1d(size))[:2] if size is not None \
            else None
        self.block_size = self._block[0] if self._block else int(max(codes.shape))

    def __repr__(self) -> str:
        return f"RolesSplitter(fractions={self.fractions}, gap={self.gap})"

    def block_cells(self, ds: xr.Dataset | xr.DataArray) -> tuple[int, int]:
        """Block size in cells ``(rows, columns)`` (the whole grid when unknown)."""
        if self._block is not None:
            return (self._block[0], self._block[-1])
        return (int(ds.sizes[schema.Y]), int(ds.sizes[schema.X]))

    def split(self, ds: xr.Dataset) -> xr.DataArray:
        """The fixed roles (checked to lie on the grid of ``ds``)."""
        schema.check_same_grid(self.roles, ds, "roles vs dataset")
        out = self.roles.copy()
        out.attrs = {
            "long_name": "spatial block role",
            "flag_values": [ROLE_NONE, ROLE_TRAIN, ROLE_VAL, ROLE_TEST],
            "flag_meanings": "none train val test",
            **{k: v for k, v in self.roles.attrs.items()
               if k in SPLIT_ATTRS},
        }
        return out


def default_blocks(receptive_field: int, patch_size: int = 32,
                   leakage_gap: int | None = None) -> tuple[int, int]:
    """Default block size and gap (cells) of the cross-validation.

    Parameters
    ----------
    receptive_field : int
        The network's receptive field in cells.
    patch_size : int, default 32
        Training patch size in cells.
    leakage_gap : int, optional
        The gap the dense map's reach asks for (:func:`geochem_sr.sampling.leakage_gap`);
        ``None`` or 0 when not recorded.

    Returns
    -------
    (block_size, gap) : (int, int)
        ``context = min(receptive_field, patch_size)``,
        ``gap = max(ceil(context / 2), leakage_gap)``, ``block_size =
        max(2 * patch_size, patch_size + 2 * gap)``
        (:func:`geochem_sr.sampling.default_block_size`; ``docs/notes/trust.md``).

    Examples
    --------
    >>> default_blocks(157, 32)  # the multi-level U-Net
    (64, 16)
    >>> default_blocks(13, 32)   # SRCNN 9-1-5
    (64, 7)
    >>> default_blocks(157, 32, leakage_gap=23)  # a dense map that reaches 23 cells
    (78, 23)
    """
    context = max(1, min(int(receptive_field), int(patch_size)))
    gap = max(math.ceil(context / 2), int(leakage_gap or 0))
    return default_block_size(patch_size, gap), gap


#: Smallest side (cells) of an evidence block.
MIN_UNIT_CELLS = 8


def block_ids(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray,
              min_groups: int = 1) -> np.ndarray:
    """Block id of every cell, on the block grid of the roles (or of training's split).

    With ``min_groups``, the block size is halved (down to 8 cells) until the validation
    cells span at least that many blocks (jackknife groups).
    """
    split = model.training.split or {}
    size = roles.attrs.get("block_size_cells", split.get("block_size_cells"))
    b = int(np.atleast_1d(size)[0]) if size is not None else 2 * int(model.patch_size)
    b = max(1, b)
    val = np.asarray(roles.values) == ROLE_VAL
    ids = BlockSplitter(b).block_ids(ds)
    while np.unique(ids[val]).size < min_groups and b >= 2 * MIN_UNIT_CELLS:
        b //= 2
        ids = BlockSplitter(b).block_ids(ds)
    return ids


def evidence_blocks(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray,
                    min_groups: int) -> tuple[np.ndarray, float | None]:
    """The blocks whose cells count as one piece of evidence, and their side in metres.

    Cells closer than the dense map's reach share dense samples, so they are not
    independent: when ``ds`` records the reach (:func:`geochem_sr.sampling.leakage_gap`),
    the blocks are that wide (at least :data:`MIN_UNIT_CELLS`). Otherwise,
    :func:`block_ids` with ``min_groups`` (side unknown: ``None``).
    """
    gap = leakage_gap(ds)
    if gap is None:
        return block_ids(ds, model, roles, min_groups), None
    side = max(MIN_UNIT_CELLS, int(gap))
    dx, dy = schema.check_grid(ds)
    return BlockSplitter(side).block_ids(ds), float(side * max(dx, abs(dy)))


def _split_record(model: GeoSRModel) -> dict[str, Any]:
    """The record of the model's training blocks (block size, gap, fractions, seed, cells)."""
    split = model.training.split
    if not split:
        raise ModelMismatchError(
            "model: expected a record of its training blocks in model.training.split (written "
            "by geochem_sr.training.train), found none; pass roles= to calibrate"
        )
    return split


def training_roles(ds: xr.Dataset, model: GeoSRModel, seed: int | None = None) -> xr.DataArray:
    """Recompute the block roles the model was trained with.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset the model was trained on.
    model : GeoSRModel
        A model from :func:`geochem_sr.training.train` (its ``training.split`` records block
        size, gap, fractions, seed and the cells per role).
    seed : int, optional
        Seed of the block split; default (and the only one accepted when training
        recorded one) the seed training used.

    Returns
    -------
    xarray.DataArray
        ``block_role`` (y, x).

    Raises
    ------
    ModelMismatchError
        No record, or the recomputed blocks hold other cell counts than training's (another
        dataset or seed): pass the roles explicitly instead.
    """
    split = _split_record(model)
    p = int(model.patch_size)
    by, bx = (int(v) for v in split.get("block_size_cells", [2 * p, 2 * p]))
    if by == bx:
        block: int | float = by
    else:
        _, dy = schema.check_grid(ds)
        block = float(by * abs(dy))
    recorded = split.get("seed", model.training.seed)
    if seed is None:
        seed = int(recorded if recorded is not None else 0)
    elif recorded is not None and int(seed) != int(recorded):
        raise ModelMismatchError(
            f"seed: the model's blocks were drawn with seed {recorded}, found seed {seed}; "
            "other blocks would put training cells into validation and test roles "
            "(omit seed, or pass roles=)"
        )
    splitter = BlockSplitter(block, fractions=split.get("fractions", (0.7, 0.15, 0.15)),
                             gap=int(split.get("gap_cells", 0)), seed=int(seed))
    roles = splitter.split(ds)
    expected = split.get("cells")
    if expected:
        codes = np.asarray(roles.values)
        found = {ROLE_NAMES[c]: int((codes == c).sum()) for c in (ROLE_TRAIN, ROLE_VAL, ROLE_TEST)}
        if {k: int(v) for k, v in expected.items()} != found:
            raise ModelMismatchError(
                f"roles: the blocks recomputed with {splitter!r} hold {found} cells, training "
                f"recorded {dict(expected)}; is this the dataset (and seed) the model was "
                "trained on? Pass roles= explicitly"
            )
    return roles


def held_out_windows(ds: xr.Dataset, model: GeoSRModel, seed: int | None = None) -> list:
    """Patch windows over the model's test blocks where the dense map exists, to score a
    prediction on ground training and calibration never saw.

    Windows of ``model.patch_size`` cells every half patch, each at least half covered by
    the dense map (:func:`geochem_sr.sampling.patch_index`), on the roles of
    :func:`training_roles`.
    """
    p = int(model.patch_size)
    roles = training_roles(ds, model, seed)
    valid = np.asarray(ds[schema.HR].notnull().any(schema.ELEMENT)
                       .transpose(schema.Y, schema.X).values)
    return patch_index(np.asarray(roles.values) == ROLE_TEST, p, max(1, p // 2), 0.5, valid)


def roles_array(ds: xr.Dataset, model: GeoSRModel, seed: int | None, roles: Any
                ) -> tuple[xr.DataArray, str]:
    """The roles to calibrate with and how they were obtained: recomputed from training's
    record (``roles=None``), from a splitter, or given as an array."""
    if roles is None:
        return training_roles(ds, model, seed), "recomputed from model.training.split"
    if hasattr(roles, "split") and not isinstance(roles, xr.DataArray | np.ndarray):
        return roles.split(ds), f"from {roles!r}"
    if isinstance(roles, np.ndarray):
        roles = xr.DataArray(roles, dims=(schema.Y, schema.X),
                             coords={schema.Y: ds[schema.Y], schema.X: ds[schema.X]})
    if not isinstance(roles, xr.DataArray) or roles.dims != (schema.Y, schema.X):
        raise SchemaError(
            "roles: expected a (y, x) DataArray of codes 0-3, a numpy array or a splitter, "
            f"found {type(roles).__name__}"
        )
    schema.check_same_grid(roles, ds, "roles vs dataset")
    return roles, "given by the caller"
