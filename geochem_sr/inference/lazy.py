"""A survey dataset super-resolved lazily on Dask: one task per tile, the model held once in
the graph (:func:`super_resolve`)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ModelMismatchError
from geochem_sr.features import stack_inputs
from geochem_sr.inference.applicability import applicability as aoa_of
from geochem_sr.inference.calibration import apply_residual, shrink_factors
from geochem_sr.inference.geometry import (
    chunk_sizes,
    region_border,
    resolve_tiling,
    tile_edges,
)
from geochem_sr.inference.inputs import prepare_inputs, sparse_map
from geochem_sr.inference.network import NetworkRun, device_of, spread_source
from geochem_sr.inference.windows import predict_block
from geochem_sr.models import GeoSRModel

__all__ = ["ATTR_PREFIX", "UNCERTAINTY_MEANING", "block_task", "provenance", "super_resolve"]

#: Prefix of the attributes a prediction records about itself.
ATTR_PREFIX = "geochem_sr_"
#: What ``hr_pred_std`` means (also written into the output's attributes), per spread source.
UNCERTAINTY_MEANING = {
    "members": (
        "standard deviation, over the members of the ensemble (networks trained with "
        "different seeds), of the predicted log10 residual. For elements calibrated on "
        "held-out blocks (calibrated_elements) it is std_scale * max(spread, std_floor), "
        "scaled so that about 68 % of validation cells fall within one standard deviation: "
        "a predictive uncertainty. For the other elements it is the raw spread: how much "
        "the members disagree, not a full predictive uncertainty."),
    "orientations": (
        "standard deviation, over the 8 rotations and mirrors of the map (test-time "
        "augmentation, aspect rotated with the map), of the network's predicted log10 "
        "residual. For elements calibrated on held-out blocks (calibrated_elements) it is "
        "std_scale * max(spread, std_floor), scaled so that about 68 % of validation cells "
        "fall within one standard deviation: a predictive uncertainty. For the other "
        "elements it is the raw spread: how much the prediction depends on the orientation "
        "of the map, not a full predictive uncertainty."),
}
#: Short names of ``hr_pred_std`` per spread source.
_STD_LONG_NAME = {
    "members": "spread of the predicted log10 residual over the ensemble's members",
    "orientations": "spread of the predicted log10 residual under rotations/mirrors",
}


def block_task(
    x_ext: np.ndarray,
    model: GeoSRModel,
    *,
    digest: str,
    halo: int,
    border: int,
    size_multiple: int,
    tta: bool,
    device: str | None,
    batch_size: int | None,
    block_info: dict | None = None,
) -> np.ndarray:
    """One Dask task: the extended block of one chunk -> its (residual[, std]) core."""
    info = block_info[None]
    (_, iy, ix), (_, ny, nx) = info["chunk-location"], info["num-chunks"]
    edges = tile_edges(iy, ix, ny, nx)
    run = NetworkRun(model, digest, device_of(device), tta, batch_size)
    res, spread = predict_block(x_ext, edges, run, halo=halo, border=border,
                                size_multiple=size_multiple)
    return res if spread is None else np.concatenate([res, spread], axis=0)


def provenance(model: GeoSRModel, digest: str, tile: int, halo: int, tta: bool) -> dict:
    """Attributes of a prediction: the model, shrinkage, tiling, version and time."""
    from geochem_sr.version import __version__

    zero = [e for e in model.elements if model.shrinkage_of(e) == 0]
    calibrated = [e for e in model.elements if e in model.std_scale]
    attrs = {
        "title": "geochem_sr super-resolution prediction",
        f"{ATTR_PREFIX}model": model.network_name,
        f"{ATTR_PREFIX}model_digest": digest,
        f"{ATTR_PREFIX}model_inputs": model.inputs,
        f"{ATTR_PREFIX}model_channels": list(model.channels),
        f"{ATTR_PREFIX}shrinkage": {e: model.shrinkage_of(e) for e in model.elements},
        f"{ATTR_PREFIX}shrinkage_note": (
            "residual_pred = shrinkage * network residual; elements with shrinkage 0 are "
            f"returned as the sparse map: {zero}"
        ),
        f"{ATTR_PREFIX}tile": int(tile),
        f"{ATTR_PREFIX}halo": int(halo),
        f"{ATTR_PREFIX}uncertainty": bool(tta),
        f"{ATTR_PREFIX}version": __version__,
        f"{ATTR_PREFIX}created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    verdicts = {e: model.verdict_of(e) for e in model.elements if model.verdict_of(e)}
    if verdicts:
        attrs[f"{ATTR_PREFIX}verdicts"] = verdicts
    if tta:
        attrs[f"{ATTR_PREFIX}uncertainty_meaning"] = UNCERTAINTY_MEANING[spread_source(model)]
        attrs[f"{ATTR_PREFIX}uncertainty_from"] = spread_source(model)
        attrs[f"{ATTR_PREFIX}calibrated_elements"] = calibrated
    return attrs


def _units_attrs(units: dict[str, str], elements: Sequence[str], log10: bool) -> dict:
    if log10:
        return {"units": "log10"}
    found = sorted({units.get(e, "") for e in elements})
    return {"units": found[0]} if len(found) == 1 else {"units": "see element_units"}


def super_resolve(
    ds: xr.Dataset,
    model: GeoSRModel,
    *,
    tile: int | None = None,
    halo: int | None = None,
    uncertainty: bool = True,
    device: str | None = None,
    batch_size: int | None = None,
    reembed: bool = False,
    applicability: bool | None = None,
) -> xr.Dataset:
    """Super-resolve a survey dataset, lazily: nothing is computed until asked.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (numpy- or dask-backed) with the variables the model's channels
        need (``lr`` always).
    model : GeoSRModel
        The trained model; checked against ``ds`` (channels, elements, units, geology
        vocabulary) before anything else happens.
    tile : int, optional
        Tile (Dask chunk) size along y and x; rounded up to a multiple of the network's
        ``size_multiple`` and to at least ``halo``. Default
        :func:`~geochem_sr.inference.geometry.default_tile`: 1024 cells for a narrow
        network predicting whole tiles, 512 at the paper's width and in patch context.
    halo : int, optional
        Context cells on each side of a tile; default
        :func:`~geochem_sr.inference.default_halo`, with which the tiled prediction equals
        a whole-region prediction to float tolerance.
    uncertainty : bool, default True
        Also return ``hr_pred_std`` from test-time augmentation (8 forwards per tile,
        :data:`UNCERTAINTY_MEANING`); ``False`` runs one forward per tile.
    device : str, optional
        Torch device; default CUDA when available, else CPU.
    batch_size : int, optional
        Passed to the window predictor (rarely needed).
    reembed : bool, default False
        Re-embed ``lithology`` with the model's geology vocabulary, replacing the
        dataset's ``geology_embedding`` (when they differ the model check refuses).
    applicability : bool, optional
        Add ``dissimilarity`` and ``aoa`` (:func:`~geochem_sr.inference.applicability`);
        default: when the model carries an area-of-applicability reference.

    Returns
    -------
    xarray.Dataset
        Dask-backed, chunks ``tile`` along y/x (element whole), on the grid of ``ds`` with
        its CRS and ``element_units``:

        ``hr_pred`` (element, y, x)
            ``lr * 10**(shrinkage * residual)`` in the original units (ppm/ppb);
        ``residual_pred`` (element, y, x)
            ``shrinkage * residual`` in log10 (what was added to ``log10(lr)``);
        ``hr_pred_std`` (element, y, x), with ``uncertainty``
            spread of the residual over an ensemble's members (free) or the 8
            rotations/mirrors (8 forwards per cell), as ``model.prediction.spread`` says,
            calibrated where the model has a ``std_scale`` (:data:`UNCERTAINTY_MEANING`),
            log10.

        NaN wherever any input channel is NaN. Attributes record the model (name, digest,
        inputs), shrinkage per element, tile and halo, the package version and the time.

    Raises
    ------
    ModelMismatchError
        The model needs channels, elements, units or a vocabulary the dataset lacks.
    """
    import dask
    import dask.array as dsa

    if not isinstance(model, GeoSRModel):
        raise ModelMismatchError(
            f"model: expected a GeoSRModel (GeoSRModel.load(path)), found {type(model).__name__}"
        )
    ds = prepare_inputs(ds, model, reembed)
    geom, tile, halo, _ = resolve_tiling(model, tile, halo, None)
    digest = model.digest
    ny, nx = ds.sizes[schema.Y], ds.sizes[schema.X]
    ych, xch = chunk_sizes(ny, tile, halo), chunk_sizes(nx, tile, halo)
    ds = ds.chunk({d: -1 for d in ds.dims if d not in (schema.X, schema.Y)}
                  | {schema.Y: ych, schema.X: xch})
    stacked = stack_inputs(ds, model.channels, model.norm_stats)
    data = stacked.data
    if not isinstance(data, dsa.Array):  # pragma: no cover - stack_inputs keeps dask
        data = dsa.from_array(data)
    data = data.rechunk((data.shape[0], ych, xch))
    # a single chunk along an axis needs no overlap (its edges are padded in the task)
    depth = {0: 0, 1: halo if len(ych) > 1 else 0, 2: halo if len(xch) > 1 else 0}
    ext = dsa.overlap.overlap(data, depth=depth, boundary={0: "none", 1: "none", 2: "none"})
    n_el = len(model.elements)
    n_out = 2 * n_el if uncertainty else n_el
    model_key = dask.delayed(model, name=f"geosr-model-{digest[:24]}", traverse=False)
    out = dsa.map_blocks(
        block_task, ext, model_key,
        chunks=((n_out,), ych, xch), dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
        digest=digest, halo=halo, border=region_border(model, halo),
        size_multiple=geom.size_multiple, tta=bool(uncertainty),
        device=device, batch_size=batch_size,
        name=f"geosr-predict-{dask.base.tokenize(data.name, digest, halo, uncertainty)}",
    )
    lr = sparse_map(ds, model).data.rechunk((n_el, ych, xch))
    hr, applied = apply_residual(lr, out[:n_el], shrink_factors(model))
    dims = (schema.ELEMENT, schema.Y, schema.X)
    units = schema.units_of(ds)
    coords: dict[str, Any] = {
        schema.Y: ds[schema.Y], schema.X: ds[schema.X],
        schema.ELEMENT: list(model.elements),
        schema.ELEMENT_UNITS: (schema.ELEMENT, [units.get(e, "") for e in model.elements]),
    }
    if schema.SPATIAL_REF in ds.coords:
        coords[schema.SPATIAL_REF] = ds[schema.SPATIAL_REF]
    variables = {
        schema.HR_PRED: xr.Variable(dims, hr, {
            "long_name": "super-resolved concentration",
            **_units_attrs(units, model.elements, log10=False)}),
        schema.RESIDUAL_PRED: xr.Variable(dims, applied, {
            "long_name": "log10(hr_pred) - log10(lr): shrinkage * network residual",
            **_units_attrs(units, model.elements, log10=True)}),
    }
    if uncertainty:
        source = spread_source(model)
        variables[schema.HR_PRED_STD] = xr.Variable(dims, out[n_el:], {
            "long_name": _STD_LONG_NAME[source], "units": "log10",
            "description": UNCERTAINTY_MEANING[source]})
    pred = xr.Dataset(variables, coords=coords,
                      attrs=provenance(model, digest, tile, halo, bool(uncertainty)))
    if applicability is None:
        applicability = "reference" in (model.aoa or {})
    if applicability:
        app = aoa_of(ds, model).chunk({schema.Y: ych, schema.X: xch})
        for name in (schema.DISSIMILARITY, schema.AOA):
            pred[name] = app[name].drop_vars(
                [c for c in app[name].coords if c not in (schema.X, schema.Y)])
    for var in pred.data_vars.values():
        var.encoding.pop("grid_mapping", None)
    return pred
