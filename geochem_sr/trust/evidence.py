"""What a calibration is fitted on: a model's held-out predictions as evidence.

A network is judged on its validation blocks (:func:`~geochem_sr.trust.predictions.predict_held`).
A per-cell regressor (trees, ridge) is cheap to fit again, so it is judged on the whole
training ground instead: every training and validation cell is predicted by the
regressor fitted on the other folds (:func:`geochem_sr.training.cross_fit.cross_fit_cells`),
four to five times the evidence of one validation split, and none of it seen by the fit
that predicts it. The test blocks are predicted by the model itself in both cases, and
stay untouched until they are scored.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError
from geochem_sr.features import target_residual
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import ROLE_NONE, ROLE_TEST, ROLE_TRAIN, ROLE_VAL
from geochem_sr.training.cross_fit import (
    CROSS_FIT_FOLDS,
    cell_kind,
    cross_fit_cells,
    fits_validation_blocks,
)
from geochem_sr.trust.predictions import Held, predict_held

__all__ = ["CROSS_FIT_FOLDS", "evidence_held", "frame_held", "fitted_on", "uses_cross_fit"]


def fitted_on(held: Held) -> str:
    """In words: the cells a calibration on ``held`` is fitted on."""
    if held.cross_fitted:
        return ("out-of-fold predictions on the training and validation blocks "
                f"({held.cross_fitted}-fold spatial cross-fitting)")
    return "validation blocks (role 2)"


def uses_cross_fit(model: GeoSRModel, folds: int | None) -> int:
    """The folds a model's evidence is cross-fitted over (0: its validation blocks).

    Raises
    ------
    ParameterError
        ``folds`` is not None, 0 or an integer of at least 2.
    """
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int | np.integer)
                              or folds < 0 or folds == 1):
        raise ParameterError(
            f"folds: expected 0 (the validation blocks) or at least 2 folds, found {folds!r}")
    if cell_kind(model) is None:
        return 0
    return CROSS_FIT_FOLDS if folds is None else int(folds)


def evidence_held(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray, codes: np.ndarray,
                  groups: np.ndarray, unit_m: float | None, *, folds: int, tile: int,
                  device: str | None, progress: bool) -> Held:
    """The model's held-out predictions with role 2 on the cells that are evidence.

    ``folds`` > 0 (per-cell regressors only): role 2 on every training and validation cell,
    predicted out of fold; 0: role 2 on the validation cells, predicted by the model.
    Role 3 on the test cells, predicted by the model. ``ds`` has the inputs prepared.
    """
    in_sample = fits_validation_blocks(model)
    if not folds and in_sample:
        raise ParameterError(
            f"folds: this {cell_kind(model)[0]} model was fitted on its validation blocks "
            "too, so they cannot calibrate it; calibrate it out of fold (folds >= 2, the "
            "default)")
    crossed = cross_fit_cells(ds, model, roles, folds=int(folds)) if folds else None
    if crossed is None:  # the validation blocks (asked, or fewer than two blocks of ground)
        if in_sample:
            raise DataError(
                f"roles: this {cell_kind(model)[0]} model was fitted on its validation "
                "blocks too and these roles "
                "leave fewer than two blocks of training ground to cross-fit it on; "
                "calibrate it with the roles it was trained with")
        return predict_held(ds, model, codes, groups, tile=tile, device=device,
                            unit_m=unit_m, progress=progress)
    oof, spread, k = crossed
    test = codes == ROLE_TEST  # the model itself predicts only these (when there are any)
    held = predict_held(ds, model, np.where(test, ROLE_TEST, ROLE_NONE) if test.any()
                        else codes, groups, tile=tile, device=device, unit_m=unit_m,
                        progress=progress)
    ground = (codes == ROLE_TRAIN) | (codes == ROLE_VAL)
    rows, cols = np.flatnonzero((ground | test).any(1)), np.flatnonzero((ground | test).any(0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    sl = (slice(box[0], box[1]), slice(box[2], box[3]))
    out = frame_held(held, box, groups)
    sub = ds.isel({schema.Y: sl[0], schema.X: sl[1]})
    target = np.asarray(target_residual(sub, model.elements).values, np.float32)
    is_ground = ground[sl]
    residual = np.where(is_ground[None], oof[:, sl[0], sl[1]], out.residual)
    spreads = np.where(is_ground[None], spread[:, sl[0], sl[1]], out.spread)
    roles_box = np.where(is_ground & np.isfinite(oof[:, sl[0], sl[1]]).any(0), ROLE_VAL,
                         np.where(test[sl], ROLE_TEST, ROLE_NONE)).astype(np.int8)
    return dataclasses.replace(out, roles=roles_box, residual=residual.astype(np.float32),
                               spread=spreads.astype(np.float32), target=target,
                               cross_fitted=k)


def frame_held(held: Held, box: tuple[int, int, int, int], groups: np.ndarray) -> Held:
    """``held`` on another box of the grid: NaN and no role where it predicted nothing, and
    NaN on every cell that is neither evidence (role 2) nor test (role 3)."""
    r0, r1, c0, c1 = box
    e_n = held.residual.shape[0]
    shape = (r1 - r0, c1 - c0)
    residual = np.full((e_n, *shape), np.nan, np.float32)
    spread, target = residual.copy(), residual.copy()
    roles = np.zeros(shape, np.int8)
    h0, h1, g0, g1 = held.box
    a0, a1, b0, b1 = max(r0, h0), min(r1, h1), max(c0, g0), min(c1, g1)
    if a0 < a1 and b0 < b1:
        dst = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
        src = (slice(a0 - h0, a1 - h0), slice(b0 - g0, b1 - g0))
        roles[dst] = held.roles[src]
        residual[:, dst[0], dst[1]] = held.residual[:, src[0], src[1]]
        spread[:, dst[0], dst[1]] = held.spread[:, src[0], src[1]]
        target[:, dst[0], dst[1]] = held.target[:, src[0], src[1]]
    scored = (roles == ROLE_VAL) | (roles == ROLE_TEST)
    residual[:, ~scored] = np.nan
    return dataclasses.replace(held, box=box, roles=roles, residual=residual, spread=spread,
                               target=target, groups=groups[r0:r1, c0:c1])
