"""When to trust a prediction: spatial cross-validation, do-no-harm, calibrated uncertainty,
and the area of applicability.

On a real survey, a residual network trained on part of an area made the rest of it *worse*
than the sparse map it started from, while its training loss kept falling (``DESIGN.md``,
"What we already know about the science"). This module makes a trained model say how far
it can be trusted, measured on blocks of the map it never trained on:

:func:`cross_validate`
    Spatial block k-fold cross-validation (as verde's ``BlockKFold``): each fold in turn is
    held out, a network is trained on the others (early stopping on an inner, spatially
    separate validation part), calibrated on that inner validation part, and scored on the
    held-out fold against the dense map. Returns a :class:`CrossValidationReport`.
:func:`calibrate`
    Fits, on the model's *validation* blocks, (1) a do-no-harm factor per element that
    shrinks the predicted residual (an element the model cannot improve gets 0 and is
    returned as the sparse map), (2) a scale of the predictive standard deviation, and
    (3) the reference of the area of applicability from the *training* blocks; then
    measures gains and coverage on the *test* blocks, untouched by training and calibration.
:func:`applicability`
    Per cell, the dissimilarity index of Meyer & Pebesma (2021) and the area-of-applicability
    flag; lazy on dask input.
:func:`trust_report`
    One table per element: gain, shrinkage, coverage at 1 and 2 standard deviations.

Decisions (with the reason for each)
------------------------------------
Blocks for cross-validation
    The network trains on patches of ``patch_size`` cells, so a pattern it can memorise spans
    at most ``context = min(receptive_field, patch_size)`` cells. Default ``gap =
    ceil(context / 2)`` cells between a held-out fold and the cells trained on (no test
    cell's context half-window reaches into a training cell), and ``block_size =
    max(2 * patch_size, context + 2 * gap)`` cells (64 cells for 32-cell patches: 3.2 km on
    a 50 m grid), so that each held-out block keeps a core farther than ``gap`` from
    training cells. See :func:`default_blocks`.
Inner validation
    In each fold, the training folds are split again into blocks (same block grid, same
    gap) of which ``val_fraction`` (20 %) become validation blocks: early stopping and
    the fold's calibration use them, never the held-out fold.
Do-no-harm shrinkage
    ``s_ls = sum(r t) / sum(r^2)`` over the validation cells (least squares), where ``r`` is
    the network's residual (mean of the 8 rotations/mirrors) and ``t = log10(hr) -
    log10(lr)``. Validation cells are few and spatially correlated, so a factor fitted to
    pure noise can come out large (on a 96 x 96 test region with five validation blocks,
    ``s_ls`` reached 1.7 for a residual unrelated to every input). Hence the standard error
    of ``s_ls`` is estimated by a delete-one-block jackknife over the validation blocks
    (subdivided when fewer than :data:`MIN_GROUPS`), and
    ``s = clip(s_ls * (1 - 1/z^2), 0, 1)`` with ``z = s_ls / se`` (a positive-part
    James-Stein factor: near ``s_ls`` when it is well determined). ``s`` is 0 — the element
    is then returned as the sparse map — when ``z < MIN_Z`` (2), or when the shrunk
    prediction improves the validation RMSE by less than ``min_gain`` (1 %). The reason is
    recorded in ``model.validation["shrunk_to_zero"]`` and warned about.
Calibrated standard deviation
    ``std = std_scale * max(s * spread, std_floor)`` (:func:`calibrated_std`), where
    ``spread`` is the standard deviation of the network's residual over the 8
    rotations/mirrors (test-time augmentation), so ``s * spread`` is that of the residual
    actually applied, and ``std_floor = STD_FLOOR_FRACTION * RMSE`` of the shrunk
    prediction on the validation cells (10 %): where the network gives the same answer in
    every orientation (spread ~ 0), or is not used at all (``s = 0``: the sparse map is
    returned and its error does not depend on the network), the uncertainty is not zero
    but a constant fitted to the observed errors. ``std_scale`` is the 68.27 % quantile of
    ``|t - s r| / max(s * spread, std_floor)`` over the validation cells, so that 68.27 % of
    them fall within one standard deviation (Gaussian 1-sigma coverage). The floor is
    stored in ``model.extra["std_floor"]`` (per element, log10 units).
Area of applicability
    Meyer & Pebesma (2021): features are the model's *normalised* input channels (equal
    weights). The reference is a seeded subsample (at most :data:`AOA_SAMPLE`) of training
    cells with every input present. ``DI = d_nearest / d_mean``, the distance to the
    nearest reference point over the mean distance between reference points. The
    threshold is the upper whisker of the training DIs (largest value not above
    ``Q3 + 1.5 IQR``, as CAST's ``aoa`` does), each reference point's DI measured to the
    reference points of *other* spatial blocks (the cross-validation view). A cell is
    inside the area of applicability when its DI is at most the threshold, every input
    is present, and its lithology unit (when the dataset has ``lithology``) was seen in
    the training cells.

References
----------
Meyer, H. & Pebesma, E. (2021). Predicting into unknown space? Estimating the area of
applicability of spatial prediction models. Methods Ecol. Evol. 12, 1620-1633.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.channels import stack_inputs, target_residual
from geochem_sr.errors import DataError, ModelMismatchError, SchemaError
from geochem_sr.model_file import GeoSRModel

__all__ = [
    "cross_validate",
    "CrossValidationReport",
    "calibrate",
    "applicability",
    "trust_report",
    "RolesSplitter",
    "default_blocks",
    "training_roles",
    "calibrated_std",
    "COVERAGE_1STD",
    "STD_FLOOR_FRACTION",
    "MIN_GAIN",
    "MIN_Z",
    "AOA_SAMPLE",
]

#: Share of a Gaussian within one standard deviation of its mean, erf(1/sqrt(2)).
COVERAGE_1STD = 0.6826894921370859
#: The floor of the test-time-augmentation spread, as a share of the validation RMSE.
STD_FLOOR_FRACTION = 0.1
#: Smallest relative RMSE gain on the validation blocks for a non-zero shrinkage factor.
MIN_GAIN = 0.01
#: The least-squares shrinkage must be this many jackknife standard errors above 0.
MIN_Z = 2.0
#: Fewer validation blocks than this are subdivided into jackknife groups.
MIN_GROUPS = 4
#: Largest number of training cells in the area-of-applicability reference sample.
AOA_SAMPLE = 2000

# role codes of geochem_sr.patches (repeated here so that importing this module, as Dask
# workers computing ``applicability`` do, does not import torch)
_NONE, _TRAIN, _VAL, _TEST = 0, 1, 2, 3
_NO_UNIT_NAME = "<no unit>"


# =========================================================================== splitters
class RolesSplitter:
    """A splitter that returns fixed block roles, for :func:`geochem_sr.training.train`.

    :func:`geochem_sr.patches.prepare_training_data` asks its ``splitter`` for the role of
    every cell (``split(ds)``); this one answers with roles computed elsewhere (e.g. one
    fold of a cross-validation, or roles drawn by hand).

    Parameters
    ----------
    roles : xarray.DataArray
        ``(y, x)`` integer roles: 0 none, 1 train, 2 validation, 3 test (the
        ``geochem_sr.patches.ROLE_*`` codes), on the grid of the datasets it will split.
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
        bad = np.setdiff1d(np.unique(codes), [_NONE, _TRAIN, _VAL, _TEST])
        if bad.size:
            raise SchemaError(f"roles: expected codes 0, 1, 2, 3, found {bad.tolist()}")
        counts = np.array([(codes == c).sum() for c in (_TRAIN, _VAL, _TEST)], float)
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
            "flag_values": [_NONE, _TRAIN, _VAL, _TEST],
            "flag_meanings": "none train val test",
            **{k: v for k, v in self.roles.attrs.items()
               if k in ("block_size_cells", "gap_cells", "seed")},
        }
        return out


def default_blocks(receptive_field: int, patch_size: int = 32) -> tuple[int, int]:
    """Default block size and gap (cells) of the cross-validation.

    Parameters
    ----------
    receptive_field : int
        The network's receptive field in cells.
    patch_size : int, default 32
        Training patch size in cells.

    Returns
    -------
    (block_size, gap) : (int, int)
        ``context = min(receptive_field, patch_size)``, ``gap = ceil(context / 2)``,
        ``block_size = max(2 * patch_size, context + 2 * gap)`` (module notes).

    Examples
    --------
    >>> default_blocks(157, 32)  # the multi-level U-Net
    (64, 16)
    >>> default_blocks(13, 32)   # SRCNN 9-1-5
    (64, 7)
    """
    context = max(1, min(int(receptive_field), int(patch_size)))
    gap = math.ceil(context / 2)
    return max(2 * int(patch_size), context + 2 * gap), gap


# =========================================================================== predictions
@dataclasses.dataclass
class _Held:
    """Predictions of a model over the bounding box of its held-out cells (numpy)."""

    box: tuple[int, int, int, int]  # r0, r1, c0, c1 in grid indices
    roles: np.ndarray  # (h, w) int8
    residual: np.ndarray  # (E, h, w) raw network residual (TTA mean), log10
    spread: np.ndarray  # (E, h, w) raw TTA spread (no std_scale), log10
    target: np.ndarray  # (E, h, w) log10(hr) - log10(lr)
    elements: list[str]
    groups: np.ndarray  # (h, w) spatial block id of every cell (jackknife groups)


def _bare(model: GeoSRModel) -> GeoSRModel:
    """The model without shrinkage, std scale and floor: the network's raw output."""
    extra = {k: v for k, v in (model.extra or {}).items() if k != "std_floor"}
    return dataclasses.replace(model, shrinkage={}, std_scale={}, extra=extra)


def _block_ids(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray,
               min_groups: int = 1) -> np.ndarray:
    """Block id of every cell, on the block grid of the roles (or of training's split).

    With ``min_groups``, the block size is halved (down to 8 cells) until the validation
    cells span at least that many blocks (jackknife groups).
    """
    from geochem_sr.patches import BlockSplitter

    split = model.extra.get("split", {}) if model.extra else {}
    size = roles.attrs.get("block_size_cells", split.get("block_size_cells"))
    b = int(np.atleast_1d(size)[0]) if size is not None else 2 * int(model.patch_size)
    b = max(1, b)
    val = np.asarray(roles.values) == _VAL
    ids = BlockSplitter(b).block_ids(ds)
    while np.unique(ids[val]).size < min_groups and b >= 16:
        b //= 2
        ids = BlockSplitter(b).block_ids(ds)
    return ids


def _predict_held(ds: xr.Dataset, model: GeoSRModel, roles: np.ndarray, groups: np.ndarray,
                  *, tile: int, device: str | None) -> _Held:
    """Predict (with TTA) the box around validation and test cells, plus an exact halo."""
    from geochem_sr.inference import default_halo, predict_array

    held = (roles == _VAL) | (roles == _TEST)
    if not held.any():
        raise DataError("roles: expected validation or test cells (codes 2, 3), found none")
    rows, cols = np.flatnonzero(held.any(1)), np.flatnonzero(held.any(0))
    halo = default_halo(model)
    ny, nx = roles.shape
    r0, r1 = max(0, rows[0] - halo), min(ny, rows[-1] + 1 + halo)
    c0, c1 = max(0, cols[0] - halo), min(nx, cols[-1] + 1 + halo)
    sub = ds.isel({schema.Y: slice(r0, r1), schema.X: slice(c0, c1)})
    import dask

    x, t = dask.compute(stack_inputs(sub, model.channels, model.norm_stats).data,
                        target_residual(sub, model.elements).data)
    res, spread = predict_array(_bare(model), np.asarray(x), tile=int(tile), tta=True,
                                device=device)
    return _Held((int(r0), int(r1), int(c0), int(c1)), roles[r0:r1, c0:c1], res, spread,
                 np.asarray(t, np.float32), list(model.elements), groups[r0:r1, c0:c1])


# =========================================================================== calibration
def _jackknife_se(num: np.ndarray, den: np.ndarray) -> float:
    """Delete-one-group jackknife standard error of ``sum(num) / sum(den)``."""
    g = num.size
    if g < 2:
        return math.inf
    n_all, d_all = float(num.sum()), float(den.sum())
    d_rest = d_all - den
    if (d_rest <= 0).any():
        return math.inf
    loo = (n_all - num) / d_rest
    return float(np.sqrt((g - 1) / g * np.sum((loo - loo.mean()) ** 2)))


def _shrinkage(rv: np.ndarray, tv: np.ndarray, gv: np.ndarray, min_gain: float
               ) -> tuple[dict[str, Any], str | None]:
    """Do-no-harm factor from the validation cells (values, targets, block ids)."""
    den = float(np.sum(rv * rv))
    s_ls = float(np.sum(rv * tv) / den) if den > 0 else 0.0
    groups, inv = np.unique(gv, return_inverse=True)
    num_g = np.bincount(inv, weights=rv * tv, minlength=groups.size)
    den_g = np.bincount(inv, weights=rv * rv, minlength=groups.size)
    se = _jackknife_se(num_g, den_g) if den > 0 else math.inf
    z = s_ls / se if se > 0 else math.inf
    factor = max(0.0, 1.0 - 1.0 / z**2) if z >= MIN_Z else 0.0
    s = float(np.clip(s_ls * factor, 0.0, 1.0))
    rmse_lr = float(np.sqrt(np.mean(tv**2)))
    gain = 1.0 - float(np.sqrt(np.mean((tv - s * rv) ** 2))) / rmse_lr if rmse_lr > 0 else 0.0
    reason = None
    if not s_ls > 0:
        reason = ("the predicted residual does not correlate positively with the dense map's "
                  f"residual on the validation blocks (least-squares factor {s_ls:.3g})")
    elif s == 0.0:
        reason = (f"the least-squares factor {s_ls:.3g} is less than {MIN_Z:g} standard "
                  f"errors above 0 across the {groups.size} validation blocks (jackknife "
                  f"standard error {se:.3g})")
    elif gain < min_gain:
        reason = (f"on the validation blocks the shrunk prediction improves on the sparse map "
                  f"by {gain:.2%} only (< {min_gain:.0%})")
    info = {"shrinkage_ls": s_ls, "shrinkage_se": se if math.isfinite(se) else math.nan,
            "val_blocks": int(groups.size),
            "gain_val": 0.0 if reason else gain, "shrinkage": 0.0 if reason else s}
    return info, reason


def _element_calibration(r: np.ndarray, sd: np.ndarray, t: np.ndarray, roles: np.ndarray,
                         groups: np.ndarray, std_floor: float, min_gain: float
                         ) -> dict[str, Any]:
    """Shrinkage, std scale and floor from the validation cells; scores on the test cells."""
    ok = np.isfinite(r) & np.isfinite(sd) & np.isfinite(t)
    val, test = ok & (roles == _VAL), ok & (roles == _TEST)
    rv, sv, tv = (a[val].astype(np.float64) for a in (r, sd, t))
    out: dict[str, Any] = {"cells_val": int(val.sum()), "cells": int(test.sum())}
    if rv.size == 0:
        info, reason = {"shrinkage_ls": math.nan, "shrinkage": 0.0}, \
            "no validation cell with a known dense value"
    else:
        info, reason = _shrinkage(rv, tv, groups[val], min_gain)
    out.update(info)
    if reason is not None:
        out["reason"] = reason
    s = float(out["shrinkage"])
    if rv.size:
        err_v = np.abs(tv - s * rv)
        rmse_v = float(np.sqrt(np.mean(err_v**2)))
        floor = max(std_floor * rmse_v, 1e-6)
        z = err_v / np.maximum(s * sv, floor)
        scale = max(float(np.quantile(z, COVERAGE_1STD)), 1e-6)
        out["coverage_1std_val"] = float(np.mean(err_v <= scale * np.maximum(s * sv, floor)))
    else:
        floor, scale = 1e-6, math.nan
    out["std_floor"], out["std_scale"] = float(floor), float(scale)
    out.update(_scores(r[test], sd[test], t[test], s, scale, floor))
    return out


def _scores(r: np.ndarray, sd: np.ndarray, t: np.ndarray, s: float, scale: float,
            floor: float) -> dict[str, float]:
    """RMSE of the sparse map, of the prediction, gain and coverage on held-out cells."""
    nan = math.nan
    if t.size == 0:
        return {"rmse_lr": nan, "rmse_pred": nan, "gain": nan, "rmse_raw": nan,
                "gain_raw": nan, "coverage_1std": nan, "coverage_2std": nan}
    r, sd, t = (np.asarray(a, np.float64) for a in (r, sd, t))
    rmse_lr = float(np.sqrt(np.mean(t**2)))
    err = np.abs(t - s * r)
    rmse_pred = float(np.sqrt(np.mean(err**2)))
    rmse_raw = float(np.sqrt(np.mean((t - r) ** 2)))
    std = scale * np.maximum(s * sd, floor)
    return {
        "rmse_lr": rmse_lr,
        "rmse_pred": rmse_pred,
        "gain": 1.0 - rmse_pred / rmse_lr if rmse_lr > 0 else nan,
        "rmse_raw": rmse_raw,
        "gain_raw": 1.0 - rmse_raw / rmse_lr if rmse_lr > 0 else nan,
        "coverage_1std": float(np.mean(err <= std)),
        "coverage_2std": float(np.mean(err <= 2 * std)),
    }


def _fit(model: GeoSRModel, held: _Held, std_floor: float, min_gain: float,
         roles_note: str) -> GeoSRModel:
    """A copy of ``model`` with shrinkage, std scale and the held-out report filled."""
    per_element: dict[str, dict[str, Any]] = {}
    for k, el in enumerate(held.elements):
        per_element[el] = _element_calibration(held.residual[k], held.spread[k],
                                                held.target[k], held.roles, held.groups,
                                                std_floor, min_gain)
    zero = {el: row["reason"] for el, row in per_element.items() if "reason" in row}
    for el, why in zero.items():
        warnings.warn(f"calibrate: {el} is returned as the sparse map (shrinkage 0): {why}",
                      UserWarning, stacklevel=3)
    n_test = sum(row["cells"] for row in per_element.values())
    if n_test == 0:
        warnings.warn(
            "calibrate: no test cells (role 3) with a known dense value; gains and coverage "
            "on held-out data are unknown (NaN)", UserWarning, stacklevel=3)
    old = copy.deepcopy(model.validation) if model.validation else {}
    validation = {k: v for k, v in old.items() if k != "per_element"}
    if "per_element" in old:
        validation["training_per_element"] = old["per_element"]
    validation["per_element"] = per_element
    validation["shrunk_to_zero"] = zero
    validation["calibration"] = {
        "fitted_on": "validation blocks (role 2)",
        "measured_on": "test blocks (role 3), untouched by training and calibration",
        "roles": roles_note,
        "std": "std_scale * max(shrinkage * tta_spread, std_floor), log10 units",
        "std_floor_fraction": float(std_floor),
        "min_gain": float(min_gain),
        "target_coverage_1std": COVERAGE_1STD,
    }
    return dataclasses.replace(
        model,
        state_dict=dict(model.state_dict),
        shrinkage={el: float(row["shrinkage"]) for el, row in per_element.items()},
        std_scale={el: float(row["std_scale"]) for el, row in per_element.items()
                   if np.isfinite(row["std_scale"])},
        validation=json.loads(json.dumps(validation)),
        extra={**copy.deepcopy(model.extra),
               "std_floor": {el: float(row["std_floor"]) for el, row in per_element.items()}},
        aoa=copy.deepcopy(model.aoa),
    )


def calibrated_std(spread: Any, model: GeoSRModel) -> Any:
    """The calibrated standard deviation from the raw test-time-augmentation spread.

    Parameters
    ----------
    spread : numpy.ndarray, dask array or xarray.DataArray
        ``(element, y, x)`` spread of the network's residual over the 8 rotations/mirrors,
        in ``model.elements`` order, *without* ``std_scale`` applied (log10 units).
    model : GeoSRModel
        A calibrated model (:func:`calibrate`).

    Returns
    -------
    Same type as ``spread``
        ``std_scale * max(shrinkage * spread, std_floor)`` per element, float32 (the
        module notes); lazy on dask input.

    Raises
    ------
    ModelMismatchError
        The model was not calibrated (no ``std_floor``).
    """
    floors = (model.extra or {}).get("std_floor")
    if not floors:
        raise ModelMismatchError(
            "model: expected a calibrated model (extra['std_floor']), found none; run "
            "geochem_sr.trust.calibrate")

    def per_element(values: dict[str, float], default: float) -> np.ndarray:
        return np.array([float(values.get(e, default)) for e in model.elements],
                        np.float32)[:, None, None]

    s = per_element(dict(model.shrinkage), 1.0)
    scale = per_element(dict(model.std_scale), 1.0)
    floor = per_element(dict(floors), 0.0)
    if isinstance(spread, xr.DataArray):
        out = (np.maximum(spread * s, floor) * scale).astype(np.float32)
        return out.assign_attrs(spread.attrs)
    import dask.array as dsa

    xp = dsa if isinstance(spread, dsa.Array) else np
    return (xp.maximum(spread * s, floor) * scale).astype(np.float32)


def _split_record(model: GeoSRModel) -> dict[str, Any]:
    split = model.extra.get("split") if model.extra else None
    if not split:
        raise ModelMismatchError(
            "model: expected a record of its training blocks in model.extra['split'] (written "
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
        A model from :func:`geochem_sr.training.train` (its ``extra["split"]`` records block
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
    from geochem_sr.patches import ROLE_NAMES, BlockSplitter

    split = _split_record(model)
    p = int(model.patch_size)
    by, bx = (int(v) for v in split.get("block_size_cells", [2 * p, 2 * p]))
    if by == bx:
        block: int | float = by
    else:
        _, dy = schema.check_grid(ds)
        block = float(by * abs(dy))
    recorded = split.get("seed", model.extra.get("seed"))
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
        found = {ROLE_NAMES[c]: int((codes == c).sum()) for c in (_TRAIN, _VAL, _TEST)}
        if {k: int(v) for k, v in expected.items()} != found:
            raise ModelMismatchError(
                f"roles: the blocks recomputed with {splitter!r} hold {found} cells, training "
                f"recorded {dict(expected)}; is this the dataset (and seed) the model was "
                "trained on? Pass roles= explicitly"
            )
    return roles


def _roles_array(ds: xr.Dataset, model: GeoSRModel, seed: int | None, roles: Any
                 ) -> tuple[xr.DataArray, str]:
    if roles is None:
        return training_roles(ds, model, seed), "recomputed from model.extra['split']"
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


def calibrate(
    ds: xr.Dataset,
    model: GeoSRModel,
    *,
    seed: int | None = None,
    roles: Any = None,
    tile: int = 256,
    std_floor: float = STD_FLOOR_FRACTION,
    min_gain: float = MIN_GAIN,
    aoa_sample: int = AOA_SAMPLE,
    device: str | None = None,
) -> GeoSRModel:
    """Fit do-no-harm shrinkage, calibrate the uncertainty, measure both on held-out blocks.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset the model was trained on (``lr``, ``hr`` and the inputs).
    model : GeoSRModel
        A trained model (:func:`geochem_sr.training.train`).
    seed : int, optional
        Seed of the block split (default, and the only one accepted when training recorded
        one: the seed training used; see :func:`training_roles`) and of the
        area-of-applicability subsample.
    roles : xarray.DataArray, numpy.ndarray or splitter, optional
        Block roles ``(y, x)`` (0 none, 1 train, 2 validation, 3 test). Default: recomputed
        from what training recorded (:func:`training_roles`). Never pass roles whose
        validation or test cells were trained on.
    tile : int, default 256
        Tile size of the prediction (:func:`geochem_sr.inference.predict_array`).
    std_floor : float, default 0.1
        Floor of the spread as a share of the validation RMSE (module notes).
    min_gain : float, default 0.01
        Smallest validation gain for a non-zero shrinkage factor.
    aoa_sample : int, default 2000
        Size of the area-of-applicability reference sample.
    device : str, optional
        Torch device (default CUDA when available).

    Returns
    -------
    GeoSRModel
        A copy with ``shrinkage``, ``std_scale``, ``extra["std_floor"]``, ``aoa`` and
        ``validation`` filled. ``validation["per_element"][el]`` holds, measured on the
        test blocks: ``rmse_lr``, ``rmse_pred`` (with shrinkage), ``gain``, ``gain_raw``
        (without), ``coverage_1std``, ``coverage_2std``, ``cells``; and from the validation
        blocks ``shrinkage``, ``shrinkage_ls``, ``std_scale``, ``std_floor``, ``gain_val``,
        ``coverage_1std_val``, ``cells_val`` (and ``reason`` when shrunk to 0).
        ``validation["shrunk_to_zero"]`` maps those elements to the reason. Training's
        own per-element report moves to ``validation["training_per_element"]``.

    Raises
    ------
    ModelMismatchError
        The model does not fit the dataset, or its training blocks cannot be recomputed.
    DataError
        No validation cells.

    Warns
    -----
    UserWarning
        For each element shrunk to 0, and when there are no test cells.

    Examples
    --------
    >>> model = calibrate(ds, train(ds, "multilevel_unet"))  # doctest: +SKIP
    >>> print(model.summary())  # doctest: +SKIP
    """
    if not isinstance(model, GeoSRModel):
        raise ModelMismatchError(f"model: expected a GeoSRModel, found {type(model).__name__}")
    for name, v in (("std_floor", std_floor), ("min_gain", min_gain)):
        if not (isinstance(v, int | float) and 0 <= v < 1):
            raise SchemaError(f"{name}: expected a number in [0, 1), found {v!r}")
    ds = _prepare(ds, model)
    roles_da, note = _roles_array(ds, model, seed, roles)
    codes = np.asarray(roles_da.values).astype(np.int8)
    if not (codes == _VAL).any():
        raise DataError("roles: expected validation cells (code 2) to calibrate on, found none")
    held = _predict_held(ds, model, codes, _block_ids(ds, model, roles_da, MIN_GROUPS),
                         tile=tile, device=device)
    out = _fit(model, held, std_floor, min_gain, note)
    aoa_seed = int(model.extra.get("seed", 0)) if seed is None else int(seed)
    out.aoa = _aoa_reference(ds, model, roles_da, aoa_seed, aoa_sample)
    return out


def _prepare(ds: xr.Dataset, model: GeoSRModel) -> xr.Dataset:
    """Check the model against the dataset (embedding geology with its vocabulary)."""
    from geochem_sr.inference import _prepare_inputs

    return _prepare_inputs(ds, model, False)


# =========================================================================== applicability
def _unit_label(code: int, names: Mapping[int, str]) -> str:
    if code < 0:
        return _NO_UNIT_NAME
    return names.get(int(code), f"code {int(code)}")


def _aoa_reference(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray, seed: int,
                   n_max: int) -> dict[str, Any]:
    """Reference sample, mean distance, threshold and units seen, from the training cells."""
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import pdist

    codes = np.asarray(roles.values)
    train = codes == _TRAIN
    rows, cols = np.flatnonzero(train.any(1)), np.flatnonzero(train.any(0))
    if rows.size == 0:
        raise DataError("roles: expected training cells (code 1) for the AOA reference")
    box = {schema.Y: slice(rows[0], rows[-1] + 1), schema.X: slice(cols[0], cols[-1] + 1)}
    feats = np.asarray(stack_inputs(ds.isel(box), model.channels, model.norm_stats).values)
    tmask = train[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    ok = tmask & np.isfinite(feats).all(axis=0)
    idx = np.flatnonzero(ok.ravel())
    if idx.size < 2:
        raise DataError("AOA: expected at least 2 training cells with every input present")
    rng = np.random.default_rng(int(seed))
    if idx.size > n_max:
        idx = np.sort(rng.choice(idx, size=int(n_max), replace=False))
    ref = np.round(feats.reshape(feats.shape[0], -1)[:, idx].T.astype(np.float64), 4)
    ids = _block_ids(ds, model, roles)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    blocks = ids.ravel()[idx]
    mean_d = float(np.mean(pdist(ref)))
    if not mean_d > 0:
        mean_d = 1.0
    train_di = np.empty(len(ref))
    if np.unique(blocks).size > 1:
        for blk in np.unique(blocks):
            inside = blocks == blk
            d, _ = cKDTree(ref[~inside]).query(ref[inside], k=1)
            train_di[inside] = d / mean_d
        rule_view = "nearest reference point in another spatial block"
    else:  # one block: nearest other point
        d, _ = cKDTree(ref).query(ref, k=2)
        train_di[:] = d[:, 1] / mean_d
        rule_view = "nearest other reference point (one block only)"
    q1, q3 = np.percentile(train_di, [25, 75])
    upper = q3 + 1.5 * (q3 - q1)
    thr = float(train_di[train_di <= upper].max())
    units: list[str] = []
    if schema.LITHOLOGY in ds.data_vars:
        from geochem_sr.plotting import unit_names  # no matplotlib at import

        lith = ds[schema.LITHOLOGY]
        names = unit_names(lith)
        seen = np.unique(np.asarray(lith.isel(box).values)[tmask])
        units = sorted({_unit_label(int(c), names) for c in seen})
    return {
        "method": "dissimilarity index, Meyer & Pebesma (2021)",
        "channels": list(model.channels),
        "features": "normalised model inputs (norm_stats), equal weights",
        "reference": ref.tolist(),
        "n_reference": int(len(ref)),
        "mean_distance": mean_d,
        "threshold": thr,
        "threshold_rule": ("upper whisker (largest value <= Q3 + 1.5 IQR) of the training "
                           f"DIs, each to the {rule_view}"),
        "training_di_quantiles": {q: float(np.percentile(train_di, float(q)))
                                  for q in ("50", "90", "99")},
        "lithology_seen": units,
        "seed": int(seed),
    }


def _di_block(feats: np.ndarray, ref: np.ndarray, mean_d: float) -> np.ndarray:
    """Dissimilarity index of the cells of one block ``(C, h, w)`` -> ``(h, w)`` float32."""
    from scipy.spatial import cKDTree

    c, h, w = feats.shape
    x = np.asarray(feats, np.float64).reshape(c, -1).T
    ok = np.isfinite(x).all(axis=1)
    out = np.full(h * w, np.nan, np.float64)
    if ok.any():
        d, _ = cKDTree(ref).query(x[ok], k=1)
        out[ok] = d / mean_d
    return out.reshape(h, w).astype(np.float32)


def applicability(ds: xr.Dataset, model: GeoSRModel) -> xr.Dataset:
    """Dissimilarity index and area-of-applicability flag of every cell.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with the model's input variables (numpy or dask backed; on dask
        the result is lazy, one nearest-neighbour search per chunk, equal to numpy).
    model : GeoSRModel
        A calibrated model (:func:`calibrate` fills ``model.aoa``).

    Returns
    -------
    xarray.Dataset
        ``dissimilarity`` (y, x) float32: distance in normalised input space to the nearest
        training reference cell over the mean distance between reference cells (NaN where
        an input is missing); ``aoa`` (y, x) bool: True inside the area of applicability —
        dissimilarity at most the threshold, every input present, and the lithology unit
        seen in training (when ``ds`` has ``lithology``). Grid, coords and CRS of ``ds``.

    Raises
    ------
    ModelMismatchError
        The model has no AOA reference, or does not fit the dataset.
    """
    import dask.array as dsa

    if not isinstance(model, GeoSRModel):
        raise ModelMismatchError(f"model: expected a GeoSRModel, found {type(model).__name__}")
    aoa = model.aoa or {}
    if "reference" not in aoa or "threshold" not in aoa:
        raise ModelMismatchError(
            "model: expected an area-of-applicability reference in model.aoa, found none; "
            "run geochem_sr.trust.calibrate(ds, model) first"
        )
    if list(aoa.get("channels", model.channels)) != list(model.channels):
        raise ModelMismatchError(
            f"model.aoa: built for channels {aoa.get('channels')}, the model has "
            f"{model.channels}"
        )
    ds = _prepare(ds, model)
    ref = np.asarray(aoa["reference"], np.float64)
    mean_d = float(aoa["mean_distance"])
    thr = np.float32(aoa["threshold"])
    feats = stack_inputs(ds, model.channels, model.norm_stats)
    data = feats.data
    if isinstance(data, dsa.Array):
        data = data.rechunk({0: -1})
        di = dsa.map_blocks(_di_block, data, ref=ref, mean_d=mean_d, drop_axis=0,
                            dtype=np.float32, meta=np.empty((0, 0), np.float32))
    else:
        di = _di_block(np.asarray(data), ref, mean_d)
    coords = {k: v for k, v in feats.coords.items() if k != "channel"}
    dissim = xr.DataArray(di, dims=(schema.Y, schema.X), coords=coords,
                          name=schema.DISSIMILARITY)
    flag = dissim.notnull() & (dissim <= thr)
    lith_note = "not checked (no lithology in the dataset)"
    if schema.LITHOLOGY in ds.data_vars:
        from geochem_sr.plotting import unit_names  # no matplotlib at import

        lith = ds[schema.LITHOLOGY]
        names = unit_names(lith)
        seen = set(aoa.get("lithology_seen", []))
        present = np.unique(np.asarray(lith.attrs.get("flag_values", []), dtype=np.int64))
        candidates = set(present.tolist()) | set(names) | {-1}
        ok_codes = sorted(c for c in candidates if _unit_label(c, names) in seen)
        flag = flag & lith.isin(ok_codes)
        unseen = sorted({_unit_label(c, names) for c in candidates} - seen)
        lith_note = f"units not seen in training are outside (known unseen units: {unseen})"
        if seen and not ok_codes:
            warnings.warn("applicability: none of the training lithology units is in this "
                          "dataset's legend; every cell is outside the area of applicability",
                          UserWarning, stacklevel=2)
    dissim.attrs = {
        "long_name": "dissimilarity index (Meyer & Pebesma 2021)",
        "units": "1",
        "threshold": float(thr),
        "description": ("distance in normalised input space to the nearest training "
                        "reference cell / mean distance between reference cells"),
    }
    flag = flag.rename(schema.AOA)
    flag.attrs = {
        "long_name": "inside the area of applicability",
        "description": ("True where the dissimilarity index is at most the threshold "
                        f"({float(thr):.4g}), every input is present, and the lithology "
                        "was seen in training"),
        "lithology": lith_note,
    }
    out = xr.Dataset({schema.DISSIMILARITY: dissim, schema.AOA: flag})
    out.attrs = {"geochem_sr_aoa_threshold": float(thr),
                 "geochem_sr_aoa_method": aoa.get("method", "")}
    crs = ds.rio.crs if schema.SPATIAL_REF in ds.coords else None
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out


# =========================================================================== report
_REPORT_COLUMNS = ("gain", "gain_raw", "shrinkage", "coverage_1std", "coverage_2std",
                   "rmse_lr", "rmse_pred", "std_scale", "cells")


def trust_report(ds: xr.Dataset | None, model: GeoSRModel) -> pd.DataFrame:
    """Per element: gain, shrinkage and coverage measured on held-out blocks.

    Parameters
    ----------
    ds : xarray.Dataset or None
        A dataset to predict (optional): when given and the model has an AOA reference,
        ``df.attrs["aoa_fraction"]`` is the share of its cells with inputs that lie inside
        the area of applicability.
    model : GeoSRModel
        A calibrated model (:func:`calibrate`).

    Returns
    -------
    pandas.DataFrame
        Index ``element``; columns ``gain`` (1 - RMSE of the prediction / RMSE of the
        sparse map, log10, on test blocks), ``gain_raw`` (without shrinkage),
        ``shrinkage``, ``coverage_1std``, ``coverage_2std``, ``rmse_lr``, ``rmse_pred``,
        ``std_scale``, ``cells``, and ``returned_as_sparse`` (bool).

    Raises
    ------
    ModelMismatchError
        The model was not calibrated.
    """
    per_el = (model.validation or {}).get("per_element", {})
    if "calibration" not in (model.validation or {}):
        raise ModelMismatchError(
            "model: expected a calibrated model (geochem_sr.trust.calibrate), found none")
    rows = []
    for el in model.elements:
        r = per_el.get(el, {})
        row = {c: r.get(c, math.nan) for c in _REPORT_COLUMNS}
        row["shrinkage"] = model.shrinkage_of(el)
        row["returned_as_sparse"] = model.shrinkage_of(el) == 0.0
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(list(model.elements), name=schema.ELEMENT))
    df.attrs = {"measured_on": model.validation["calibration"].get("measured_on", "")}
    if ds is not None and model.aoa:
        app = applicability(ds, model)
        present = app[schema.DISSIMILARITY].notnull()
        n = int(present.sum())
        df.attrs["aoa_fraction"] = float(app[schema.AOA].sum()) / n if n else math.nan
    return df


# =========================================================================== cross-validation
@dataclasses.dataclass
class CrossValidationReport:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    per_fold : pandas.DataFrame
        One row per (fold, element), scores on the held-out fold (see :func:`cross_validate`).
    per_element : pandas.DataFrame
        Index ``element`` (and a final ``"mean"`` row): RMSE pooled over every held-out cell
        of every fold, gains, coverage, mean PSNR/SSIM/IoU over folds.
    settings : dict
        Network, inputs, folds, block size, gap, epochs, seed.
    oof : xarray.Dataset or None
        Out-of-fold predictions on the grid: ``residual_pred`` (raw network residual, no
        shrinkage), ``residual_spread`` (raw TTA spread), ``residual_true``
        (``log10(hr) - log10(lr)``), and ``fold`` (y, x; -1 outside every held-out fold).
    """

    per_fold: pd.DataFrame
    per_element: pd.DataFrame
    settings: dict[str, Any]
    oof: xr.Dataset | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict: settings, per-element and per-fold tables."""
        def records(df: pd.DataFrame) -> Any:
            return json.loads(df.to_json(orient="index" if df.index.name else "records"))

        return {
            "settings": json.loads(json.dumps(self.settings, default=_jsonable)),
            "per_element": records(self.per_element),
            "per_fold": json.loads(self.per_fold.to_json(orient="records")),
        }

    def fit_shrinkage(self, min_gain: float = MIN_GAIN) -> dict[str, float]:
        """Do-no-harm factors fitted on the pooled out-of-fold predictions.

        The same rule as :func:`calibrate` (least squares clipped to [0, 1], 0 when the gain
        is below ``min_gain``), over every held-out cell of every fold.
        """
        if self.oof is None:
            raise DataError("report: out-of-fold predictions were not kept (keep_oof=False)")
        out = {}
        fold = np.asarray(self.oof["fold"].values)
        roles = np.where(fold >= 0, _VAL, _NONE).astype(np.int8)
        for el in self.oof[schema.ELEMENT].values:
            sel = {schema.ELEMENT: el}
            r = np.asarray(self.oof["residual_pred"].sel(sel).values)
            t = np.asarray(self.oof["residual_true"].sel(sel).values)
            row = _element_calibration(r, np.zeros_like(r), t, roles, fold,
                                       STD_FLOOR_FRACTION, min_gain)
            out[str(el)] = float(row["shrinkage"])
        return out

    def attach(self, model: GeoSRModel) -> GeoSRModel:
        """A copy of ``model`` whose ``validation["cross_validation"]`` holds this report."""
        validation = copy.deepcopy(model.validation) if model.validation else {}
        validation["cross_validation"] = self.to_dict()
        return dataclasses.replace(model, validation=validation)

    def __str__(self) -> str:
        s = self.settings
        cols = [c for c in ("rmse_lr", "rmse_pred", "gain", "gain_raw", "gain_std",
                            "folds_improved", "shrinkage", "coverage_1std", "coverage_2std",
                            "psnr_lr", "psnr_pred", "ssim_lr", "ssim_pred")
                if c in self.per_element.columns]
        head = (f"Spatial {s.get('folds')}-fold block cross-validation of {s.get('model')} "
                f"({s.get('inputs')}): blocks {s.get('block_size')} cells, gap "
                f"{s.get('gap')} cells, {s.get('epochs')} epochs max, seed {s.get('seed')}\n"
                "gain = 1 - RMSE(prediction) / RMSE(sparse map), log10, against the dense "
                "map on held-out folds; prediction = after do-no-harm shrinkage; gain_raw = "
                "network alone")
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.3f}".format):
            return head + "\n" + self.per_element[cols].to_string()

    def _repr_html_(self) -> str:  # pragma: no cover - notebooks
        return self.per_element._repr_html_()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | tuple):
        return list(obj)
    return str(obj)


def _spec(model: str | GeoSRModel, inputs: str, train_kwargs: dict[str, Any]
          ) -> tuple[str, str, dict[str, Any]]:
    """Network name, inputs and train() keywords from a name or a trained model."""
    if isinstance(model, GeoSRModel):
        cfg = {k: v for k, v in model.network_config.items()
               if k not in ("in_channels", "out_channels")}
        kw = {"model_kwargs": cfg, "elements": list(model.elements),
              "patch_size": int(model.patch_size)}
        for key in ("stride", "loss", "batch_size"):
            if key in model.extra:
                kw[key] = model.extra[key]
        return model.network_name, model.inputs, {**kw, **train_kwargs}
    if not isinstance(model, str):
        raise SchemaError(
            f"model: expected a network name or a GeoSRModel, found {type(model).__name__}")
    return model, inputs, dict(train_kwargs)


def _receptive_field(name: str, ds: xr.Dataset, inputs: str, kw: Mapping[str, Any]) -> int:
    from geochem_sr.channels import channel_names
    from geochem_sr.models import get_model

    elements = kw.get("elements") or [str(e) for e in ds[schema.ELEMENT].values]
    n_emb = int(ds.sizes.get(schema.EMBEDDING, 5))
    inputs = schema.resolve_inputs(inputs, ds)
    net = get_model(name, in_channels=len(channel_names(inputs, elements, n_emb)),
                    out_channels=len(elements), **dict(kw.get("model_kwargs") or {}))
    return int(getattr(net, "receptive_field", 64))


def _fold_roles(ds: xr.Dataset, train_mask: np.ndarray, test_mask: np.ndarray,
                block: int | float, gap: int, val_fraction: float, seed: int
                ) -> tuple[xr.DataArray, xr.DataArray]:
    """(roles for training: inner train/val, roles for calibration: + held-out fold)."""
    from geochem_sr.patches import BlockSplitter

    tm = xr.DataArray(train_mask, dims=(schema.Y, schema.X))
    inner_ds = ds.assign({schema.HR: ds[schema.HR].where(tm)})
    inner = BlockSplitter(block, fractions=(1 - val_fraction, val_fraction, 0.0), gap=gap,
                          seed=seed).split(inner_ds)
    codes = np.where(train_mask, np.asarray(inner.values), _NONE).astype(np.int8)
    train_roles = inner.copy(data=codes)
    full = inner.copy(data=np.where(test_mask, _TEST, codes).astype(np.int8))
    return train_roles, full


def _fold_scores(ds: xr.Dataset, cal: GeoSRModel, held: _Held, test_mask: np.ndarray,
                 patch_size: int) -> dict[str, dict[str, float]]:
    """PSNR/SSIM/IoU of the sparse map and of the shrunk prediction on one held-out fold."""
    from geochem_sr.metrics import evaluate
    from geochem_sr.patches import patch_index

    r0, r1, c0, c1 = held.box
    ny, nx = test_mask.shape
    valid = np.asarray(ds[schema.HR].notnull().any(schema.ELEMENT).values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        windows = patch_index(test_mask, patch_size, max(1, patch_size // 2), 0.5, valid)
    if not windows:
        rows, cols = np.flatnonzero(test_mask.any(1)), np.flatnonzero(test_mask.any(0))
        windows = [(slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))]
    lr = ds[schema.LR].sel({schema.ELEMENT: held.elements}).transpose(
        schema.ELEMENT, schema.Y, schema.X)
    lr_np = np.asarray(lr.values, np.float32)
    shrink = np.array([cal.shrinkage_of(e) for e in held.elements], np.float32)[:, None, None]
    pred = np.full(lr_np.shape, np.nan, np.float32)
    box = (slice(None), slice(r0, r1), slice(c0, c1))
    pred[box] = lr_np[box] * np.power(np.float32(10), shrink * held.residual)
    inside = np.broadcast_to(test_mask, pred.shape)
    pred = np.where(inside, pred, np.nan)
    sparse = np.where(inside, lr_np, np.nan)
    scores = {}
    for tag, arr in (("lr", sparse), ("pred", pred)):
        da = lr.copy(data=arr)
        scores[tag] = evaluate(ds, da, elements=held.elements, windows=windows)
    out: dict[str, dict[str, float]] = {}
    for el in held.elements:
        row: dict[str, float] = {}
        for tag in ("lr", "pred"):
            df = scores[tag]
            row[f"psnr_{tag}"] = float(df.loc[el, "psnr_avg"])
            row[f"ssim_{tag}"] = float(df.loc[el, "ssim_avg"])
            row[f"iou85_{tag}"] = float(df.loc[el, "iou85"])
            row[f"iou95_{tag}"] = float(df.loc[el, "iou95"])
        out[el] = row
    return out


def cross_validate(
    ds: xr.Dataset,
    model: str | GeoSRModel = "multilevel_unet",
    inputs: str = "auto",
    *,
    folds: int = 5,
    block_size: int | float | None = None,
    gap: int | None = None,
    epochs: int = 50,
    seed: int = 0,
    val_fraction: float = 0.2,
    tile: int = 256,
    keep_oof: bool = True,
    device: str | None = None,
    progress: bool = False,
    **train_kwargs: Any,
) -> CrossValidationReport:
    """Spatial block k-fold cross-validation of a network on a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    model : str or GeoSRModel, default "multilevel_unet"
        A network name (:func:`geochem_sr.models.get_model`), or a trained model whose
        network, configuration, inputs, elements and patch size are reused.
    inputs : str, default "auto"
        Input set (ignored when ``model`` is a GeoSRModel).
    folds : int, default 5
        Number of folds (:meth:`geochem_sr.patches.BlockSplitter.folds`).
    block_size : int or float, optional
        Block size: ``int`` cells, ``float`` metres. Default :func:`default_blocks`.
    gap : int, optional
        Cells between a held-out fold and the cells trained on (and between inner
        training and validation blocks). Default :func:`default_blocks`.
    epochs : int, default 50
        Maximum epochs per fold (early stopping on the inner validation blocks).
    seed : int, default 0
        Seeds the folds, the inner splits, training and the AOA subsample.
    val_fraction : float, default 0.2
        Share of each fold's training cells used as inner validation blocks.
    tile : int, default 256
        Tile size of the held-out predictions.
    keep_oof : bool, default True
        Keep the out-of-fold predictions in ``report.oof``.
    device : str, optional
        Torch device.
    progress : bool, default False
        Show training progress bars.
    **train_kwargs
        Passed to :func:`geochem_sr.training.train` (``patch_size``, ``stride``,
        ``model_kwargs``, ``elements``, ``loss``, ``patience``, ``batch_size``...).

    Returns
    -------
    CrossValidationReport
        ``per_fold`` has per (fold, element): ``cells``, ``rmse_lr``, ``rmse_pred``,
        ``ratio`` (``rmse_pred / rmse_lr``), ``gain`` (``1 - ratio``; prediction after the
        fold's do-no-harm shrinkage, fitted on its inner validation blocks), ``rmse_raw``
        and ``gain_raw`` (network alone), ``shrinkage``, ``coverage_1std``,
        ``coverage_2std`` (the fold's calibrated std), ``psnr_lr``/``psnr_pred``,
        ``ssim_lr``/``ssim_pred`` (averages over held-out patches), ``iou85_*``,
        ``iou95_*``, ``best_epoch``. ``per_element`` pools them.

    Raises
    ------
    DataError
        Too few blocks for the folds, or a fold without training or validation patches
        (use smaller blocks or fewer folds).
    """
    from geochem_sr.patches import BlockSplitter
    from geochem_sr.training import train

    name, inputs, kw = _spec(model, inputs, train_kwargs)
    if not 0 < float(val_fraction) < 1:
        raise SchemaError(f"val_fraction: expected a share in (0, 1), found {val_fraction!r}")
    for key in ("splitter", "data", "checkpoint"):
        if key in kw:
            raise SchemaError(f"{key}: not accepted by cross_validate (it makes its own folds)")
    patch_size = int(kw.get("patch_size", 32))
    rf = _receptive_field(name, ds, inputs, kw)
    d_block, d_gap = default_blocks(rf, patch_size)
    block = d_block if block_size is None else block_size
    gap = d_gap if gap is None else int(gap)
    splitter = BlockSplitter(block, n_folds=int(folds), gap=gap, seed=int(seed))
    ny, nx = ds.sizes[schema.Y], ds.sizes[schema.X]
    fold_rows: list[dict[str, Any]] = []
    oof: dict[str, np.ndarray] = {}
    fold_map = np.full((ny, nx), -1, np.int8)
    elements: list[str] = []
    for f, (train_m, test_m) in enumerate(splitter.folds(ds, int(folds))):
        train_mask, test_mask = np.asarray(train_m.values), np.asarray(test_m.values)
        train_roles, full_roles = _fold_roles(ds, train_mask, test_mask, block, gap,
                                              float(val_fraction), int(seed) + 1 + f)
        net = train(ds, model=name, inputs=inputs, epochs=int(epochs), seed=int(seed),
                    splitter=RolesSplitter(train_roles), device=device, progress=progress,
                    **kw)
        elements = list(net.elements)
        prepared = _prepare(ds, net)
        codes = np.asarray(full_roles.values)
        held = _predict_held(prepared, net, codes,
                             _block_ids(ds, net, full_roles, MIN_GROUPS), tile=tile,
                             device=device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cal = _fit(net, held, STD_FLOOR_FRACTION, MIN_GAIN, f"cross-validation fold {f}")
        extra = _fold_scores(prepared, cal, held, test_mask, patch_size)
        for el in elements:
            r = cal.validation["per_element"][el]
            rmse_lr, rmse_pred = r["rmse_lr"], r["rmse_pred"]
            fold_rows.append({
                "fold": f, "element": el, "cells": r["cells"],
                "rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
                "ratio": rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
                "gain": r["gain"], "rmse_raw": r["rmse_raw"], "gain_raw": r["gain_raw"],
                "shrinkage": r["shrinkage"], "coverage_1std": r["coverage_1std"],
                "coverage_2std": r["coverage_2std"], **extra[el],
                "best_epoch": int(net.validation.get("best_epoch", 0)),
            })
        if keep_oof:
            _store_oof(oof, held, test_mask, (ny, nx))
        fold_map[test_mask] = f
    per_fold = pd.DataFrame(fold_rows)
    settings = {
        "model": name, "inputs": inputs, "folds": int(folds), "block_size": block,
        "block_size_cells": list(splitter.block_cells(ds)), "gap": gap,
        "receptive_field": rf, "patch_size": patch_size, "epochs": int(epochs),
        "seed": int(seed), "val_fraction": float(val_fraction),
        "std_floor_fraction": STD_FLOOR_FRACTION, "min_gain": MIN_GAIN,
        "train_kwargs": json.loads(json.dumps(kw, default=_jsonable)),
    }
    oof_ds = _oof_dataset(ds, oof, fold_map, elements) if keep_oof else None
    return CrossValidationReport(per_fold, _aggregate(per_fold, elements), settings, oof_ds)


def _store_oof(oof: dict[str, np.ndarray], held: _Held, test_mask: np.ndarray,
               shape: tuple[int, int]) -> None:
    r0, r1, c0, c1 = held.box
    ne = len(held.elements)
    for key, arr in (("residual_pred", held.residual), ("residual_spread", held.spread),
                     ("residual_true", held.target)):
        if key not in oof:
            oof[key] = np.full((ne, *shape), np.nan, np.float32)
        m = test_mask[r0:r1, c0:c1]
        dst = oof[key][:, r0:r1, c0:c1]
        dst[:, m] = arr[:, m]


def _oof_dataset(ds: xr.Dataset, oof: Mapping[str, np.ndarray], fold_map: np.ndarray,
                 elements: Sequence[str]) -> xr.Dataset:
    coords: dict[str, Any] = {schema.Y: ds[schema.Y], schema.X: ds[schema.X],
                              schema.ELEMENT: list(elements)}
    if schema.SPATIAL_REF in ds.coords:
        coords[schema.SPATIAL_REF] = ds[schema.SPATIAL_REF]
    dims = (schema.ELEMENT, schema.Y, schema.X)
    out = xr.Dataset({k: (dims, v, {"units": "log10"}) for k, v in oof.items()}, coords=coords)
    out["fold"] = ((schema.Y, schema.X), fold_map, {"long_name": "held-out fold", "none": -1})
    return out


def _pooled(df: pd.DataFrame, col: str) -> float:
    """RMSE pooled over folds, weighted by their cells."""
    w = df["cells"].to_numpy(float)
    v = df[col].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sqrt(np.sum(w[ok] * v[ok] ** 2) / np.sum(w[ok]))) if ok.any() else math.nan


def _weighted(df: pd.DataFrame, col: str) -> float:
    w = df["cells"].to_numpy(float)
    v = df[col].to_numpy(float)
    ok = np.isfinite(v) & (w > 0)
    return float(np.sum(w[ok] * v[ok]) / np.sum(w[ok])) if ok.any() else math.nan


def _aggregate(per_fold: pd.DataFrame, elements: Sequence[str]) -> pd.DataFrame:
    rows = []
    for el in elements:
        d = per_fold[per_fold["element"] == el]
        rmse_lr, rmse_pred, rmse_raw = (_pooled(d, c) for c in ("rmse_lr", "rmse_pred",
                                                                  "rmse_raw"))
        row = {
            "cells": int(d["cells"].sum()),
            "rmse_lr": rmse_lr, "rmse_pred": rmse_pred,
            "ratio": rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
            "gain": 1 - rmse_pred / rmse_lr if rmse_lr > 0 else math.nan,
            "gain_raw": 1 - rmse_raw / rmse_lr if rmse_lr > 0 else math.nan,
            "gain_mean": float(d["gain"].mean()), "gain_std": float(d["gain"].std(ddof=0)),
            "folds_improved": int((d["gain"] > 0).sum()),
            "shrinkage": float(d["shrinkage"].mean()),
            "coverage_1std": _weighted(d, "coverage_1std"),
            "coverage_2std": _weighted(d, "coverage_2std"),
        }
        for col in ("psnr_lr", "psnr_pred", "ssim_lr", "ssim_pred", "iou85_lr", "iou85_pred",
                    "iou95_lr", "iou95_pred"):
            row[col] = float(d[col].mean())
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(list(elements), name=schema.ELEMENT))
    if len(df):
        df = df.astype({c: float for c in df.select_dtypes("number").columns})
        df.loc["mean"] = df.mean(numeric_only=True)
    return df

