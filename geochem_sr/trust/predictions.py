"""A model's raw predictions over its held-out cells: what calibration and cross-validation
score (the network alone, with its spread, on the box around validation and
test cells plus an exact halo)."""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.features import stack_inputs, target_residual
from geochem_sr.inference import default_halo, predict_array
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import ROLE_TEST, ROLE_VAL

__all__ = ["Held", "bare", "predict_held"]


@dataclasses.dataclass
class Held:
    """Predictions of a model over the bounding box of its held-out cells (numpy)."""

    box: tuple[int, int, int, int]  # r0, r1, c0, c1 in grid indices
    roles: np.ndarray  # (h, w) int8
    residual: np.ndarray  # (E, h, w) raw network residual, log10
    spread: np.ndarray  # (E, h, w) raw spread, members' or orientations' (no std_scale)
    target: np.ndarray  # (E, h, w) log10(hr) - log10(lr)
    elements: list[str]
    groups: np.ndarray  # (h, w) spatial block id of every cell (jackknife groups)
    unit_m: float | None = None  # side of a group (metres), when known
    cross_fitted: int = 0  # folds of the out-of-fold predictions on role 2 (trust.evidence)


def bare(model: GeoSRModel) -> GeoSRModel:
    """The model without shrinkage, std scale and floor: the network's raw output."""
    return dataclasses.replace(model, shrinkage={}, std_scale={},
                               prediction=dataclasses.replace(model.prediction, std_floor=None))


def predict_held(ds: xr.Dataset, model: GeoSRModel, roles: np.ndarray, groups: np.ndarray,
                 *, tile: int, device: str | None, unit_m: float | None = None,
                 progress: bool = False) -> Held:
    """Predict (with the model's spread) the box around validation and test cells, plus an
    exact halo: once, for everything calibration and cross-validation score."""
    held = (roles == ROLE_VAL) | (roles == ROLE_TEST)
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
    res, spread = predict_array(bare(model), np.asarray(x), tile=int(tile), tta=True,
                                device=device, progress=progress)
    return Held((int(r0), int(r1), int(c0), int(c1)), roles[r0:r1, c0:c1], res, spread,
                np.asarray(t, np.float32), list(model.elements), groups[r0:r1, c0:c1],
                unit_m)
