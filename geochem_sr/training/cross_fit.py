"""Out-of-fold predictions of a per-cell regressor over its training and validation blocks.

One validation split of a small region holds a fifth of its area, a handful of blocks
that may not look like the rest: on the experiment's region a ridge gained +7.4 % on the
test blocks and lost 4 % on the validation blocks, so the do-no-harm rule refused 6 of
10 elements. :func:`cross_fit_cells` gives the rule the whole training ground as
evidence instead: the training and validation blocks are dealt to ``folds`` folds of
whole blocks (:meth:`geochem_sr.sampling.BlockSplitter.folds`); each fold is predicted by
the same regressor (same kind, scales, members and seeds:
:func:`~geochem_sr.training.cells.fit_members`) fitted on the other folds less a buffer of
the split's gap, so no prediction has seen a dense sample within reach of its
cell. The features are computed once; only the fits are repeated. The test blocks are
not touched.

What is held fixed from the model rather than chosen again inside each fold: the trees'
number of rounds per element (chosen by early stopping on the validation blocks, a
single number per element; the model is then fitted on the training and validation
blocks for those rounds, as each fold is on its other folds). The ridge penalty is
chosen again within each fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ModelMismatchError
from geochem_sr.models import CELL_MODELS, GeoSRModel
from geochem_sr.sampling import (
    ROLE_TRAIN,
    ROLE_VAL,
    BlockSplitter,
    default_block_size,
    leakage_gap,
)
from geochem_sr.training.cells import CellTable, cell_rows, fit_members, squares_of

__all__ = ["cross_fit_cells", "cell_kind", "fold_plan", "can_cross_fit", "fits_validation_blocks",
           "CROSS_FIT_FOLDS", "FITTED_ON_GROUND"]

#: Folds of the training and validation blocks that the out-of-fold predictions come from.
CROSS_FIT_FOLDS = 5
#: ``model.validation["fitted_on"]`` of a per-cell regressor fitted on the validation
#: blocks too (the ridge, and the trees for the rounds early stopping chose).
FITTED_ON_GROUND = "training and validation blocks"


def fits_validation_blocks(model: GeoSRModel) -> bool:
    """Whether the model was fitted on its validation blocks too (then only out-of-fold
    evidence can calibrate it)."""
    return (model.validation or {}).get("fitted_on") == FITTED_ON_GROUND


def cell_kind(model: GeoSRModel) -> tuple[str, int, dict[str, Any]] | None:
    """(kind, members, member config) of a per-cell regressor or an ensemble of them;
    None for any other model."""
    if model.network_name in CELL_MODELS:
        return model.network_name, 1, dict(model.network_config)
    cfg = model.network_config
    if model.network_name == "ensemble" and cfg.get("member") in CELL_MODELS:
        return str(cfg["member"]), int(cfg["n"]), dict(cfg.get("member_config") or {})
    return None


def _rounds(model: GeoSRModel, n: int) -> list[list[int]]:
    """The trees' rounds per member and element, as training chose them."""
    if n > 1:
        fits = [m.get("fit", {}) for m in (model.training.ensemble or [])]
    else:
        fits = [model.validation.get("fit", {})]
    if len(fits) != n or not all(fits):
        raise ModelMismatchError(
            "model: expected the trees' rounds per element in its training record "
            "(validation['fit'] or training.ensemble), found none; train it again with "
            "geochem_sr.training.train")
    return [[int(f.get(el, {}).get("rounds", 0)) for el in model.elements] for f in fits]


def _ground_folds(ds: xr.Dataset, roles: xr.DataArray, seed: int, patch_size: int,
                  folds: int) -> tuple[BlockSplitter, np.ndarray, int]:
    """The splitter of ``roles``' blocks and buffer, the training ground, and the folds it
    allows (at most one per block)."""
    codes = np.asarray(roles.transpose(schema.Y, schema.X).values)
    ground = (codes == ROLE_TRAIN) | (codes == ROLE_VAL)
    gap = int(roles.attrs.get("gap_cells", leakage_gap(ds) or 0))
    size = roles.attrs.get("block_size_cells")
    block = int(np.atleast_1d(size)[0]) if size is not None \
        else default_block_size(int(patch_size), gap)
    splitter = BlockSplitter(block, gap=gap, seed=int(seed))
    k = min(int(folds), int(np.unique(splitter.block_ids(ds)[ground]).size))
    return splitter, ground, k


def can_cross_fit(ds: xr.Dataset, roles: xr.DataArray, seed: int, patch_size: int,
                  folds: int = CROSS_FIT_FOLDS) -> bool:
    """Whether the training ground of ``roles`` holds the two blocks or more that
    :func:`fold_plan` needs (the block ids only; no fold is built)."""
    return _ground_folds(ds, roles, seed, patch_size, folds)[2] >= 2


def fold_plan(ds: xr.Dataset, roles: xr.DataArray, seed: int, patch_size: int,
              folds: int = CROSS_FIT_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of the training ground: per fold, the ``(y, x)`` cells fitted on (the other
    folds less the gap buffer) and the cells predicted; empty with fewer than 2 blocks.

    The blocks and the buffer are those of ``roles`` (attributes ``block_size_cells``,
    ``gap_cells``; default the survey's leakage gap and the default block size).
    """
    splitter, ground, k = _ground_folds(ds, roles, seed, patch_size, folds)
    if k < 2:
        return []
    mask = xr.DataArray(ground, dims=(schema.Y, schema.X))
    return [(np.asarray(tr.values) & ground, np.asarray(va.values) & ground)
            for tr, va in splitter.folds(ds.assign({schema.HR: ds[schema.HR].where(mask)}), k)]


def cross_fit_cells(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray, *,
                    folds: int = CROSS_FIT_FOLDS
                    ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Out-of-fold residuals of a per-cell regressor on its training and validation cells.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset with the model's inputs prepared
        (:func:`geochem_sr.inference.prepare_inputs`).
    model : GeoSRModel
        A per-cell regressor (``"trees"``, ``"ridge"`` or an ensemble of either).
    roles : xarray.DataArray
        The block roles it was trained with; ``block_size_cells`` and ``gap_cells`` in its
        attributes set the folds' blocks and buffer (default: the survey's leakage gap).
    folds : int, default 5
        Number of folds (at most one per block of the training ground).

    Returns
    -------
    (residual, spread, k) or None
        ``residual`` and ``spread``, ``(E, y, x)`` float32: the prediction of every
        training and validation cell by the fits that did not see its fold (NaN
        elsewhere), and the members' standard deviation there (0 for a single
        regressor); ``k`` the folds used. None when the training ground holds fewer than
        two blocks.

    Raises
    ------
    ModelMismatchError
        The model is not a per-cell regressor.
    DataError
        A fold with no cell to fit on.
    """
    spec = cell_kind(model)
    if spec is None:
        raise ModelMismatchError(
            f"model: expected a per-cell regressor (trees or ridge), found "
            f"{model.network_name!r}")
    kind, n, cfg = spec
    scales = cfg.get("scales")
    rounds = _rounds(model, n) if kind == "trees" else None
    codes = np.asarray(roles.transpose(schema.Y, schema.X).values)
    ground = (codes == ROLE_TRAIN) | (codes == ROLE_VAL)
    plan = fold_plan(ds, roles, int(model.training.seed or 0), int(model.patch_size), folds)
    if not plan:
        return None
    k = len(plan)
    feats, targets, kept, (r0, c0), _ = cell_rows(
        ds, list(model.channels), dict(model.norm_stats), list(model.elements), kind, scales,
        [ground])
    x, t, where = feats[0], targets[0], kept[0]
    yy, xx = np.nonzero(where)
    squares = squares_of(where)
    fold_fit = [fit[r0 + yy, c0 + xx] for fit, _ in plan]
    fold_out = [out[r0 + yy, c0 + xx] for _, out in plan]
    e_n = len(model.elements)
    pred = np.full((n, x.shape[0], e_n), np.nan, np.float32)
    empty = np.zeros((0, x.shape[1]))
    for f, (fit, out) in enumerate(zip(fold_fit, fold_out, strict=True)):
        if not out.any():
            continue
        if not fit.any():
            raise DataError(f"cross-fitting fold {f}: expected training cells outside the "
                            "fold and its gap buffer, found none; use fewer folds")
        table = CellTable(x[fit], empty, t[fit], np.zeros((0, e_n)), squares[fit], 0)
        nets, _ = fit_members(kind, table, len(model.channels), e_n, scales,
                              int(model.training.seed or 0), n, rounds)
        for i, net in enumerate(nets):
            pred[i, out] = net.predict_rows(x[out])
    ny, nx = codes.shape
    residual = np.full((e_n, ny, nx), np.nan, np.float32)
    spread = np.full((e_n, ny, nx), np.nan, np.float32)
    mean = pred.mean(0)
    residual[:, r0 + yy, c0 + xx] = mean.T
    spread[:, r0 + yy, c0 + xx] = np.sqrt(((pred - mean) ** 2).mean(0)).T
    return residual, spread, k
