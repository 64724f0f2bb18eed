"""A model's area of applicability applied to new cells: the dissimilarity index of Meyer &
Pebesma (2021) and the inside/outside flag (the reference is fitted by
:mod:`geochem_sr.trust`)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ModelMismatchError
from geochem_sr.features import stack_inputs
from geochem_sr.inference.inputs import prepare_inputs
from geochem_sr.models import GeoSRModel

__all__ = ["applicability", "aoa_rule", "AoaRule", "applicability_attrs", "nearest_distance"]


#: Cells per matrix product in :func:`nearest_distance` (the block of squared distances,
#: ``NEAREST_CHUNK x reference points``, stays in the processor's cache).
NEAREST_CHUNK = 512


def nearest_distance(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``x`` to its nearest row of ``ref``.

    Brute force as matrix products (``|x - r|**2 = |x|**2 + |r|**2 - 2 x.r``, both centred
    on the reference mean), chunk by chunk in float32; rows that come out next to a
    reference row (squared distance below ``1e-3`` of the reference's mean squared norm,
    where float32 rounding would show) get the distance to it recomputed in float64. Some
    10-40 times faster than a k-d tree in the 20-40 dimensions of a model's inputs, where a
    tree degenerates to a slower brute force. Float32 rounding leaves an error of about
    ``1e-7`` of the squared norms in the squared distance (``1e-4`` of the squared distance
    just above the cut-off, far less for the distances the area of applicability compares
    with its threshold).

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, c)`` finite values.
    ref : numpy.ndarray
        ``(m, c)`` reference rows, ``m >= 1``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64.
    """
    import torch

    centre = np.asarray(ref, np.float64).mean(axis=0)
    r64 = np.asarray(ref, np.float64) - centre
    r = torch.from_numpy(r64.astype(np.float32))
    r2, rt = (r * r).sum(1), (-2.0 * r).T.contiguous()
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32) - centre.astype(np.float32))
    d2 = np.empty(len(xt), np.float64)
    with torch.inference_mode():
        for start in range(0, len(xt), NEAREST_CHUNK):
            xb = xt[start:start + NEAREST_CHUNK]
            part = torch.addmm(r2, xb, rt).amin(1) + (xb * xb).sum(1)
            d2[start:start + len(xb)] = part.numpy()
        near = np.flatnonzero(d2 < 1e-3 * float(r2.mean()))
        for start in range(0, near.size, NEAREST_CHUNK):  # exact where rounding would show
            rows = near[start:start + NEAREST_CHUNK]
            xn = np.asarray(x[rows], np.float64) - centre
            idx = torch.addmm(r2, xt[rows], rt).argmin(1).numpy()
            d2[rows] = ((xn - r64[idx]) ** 2).sum(axis=1)
    return np.sqrt(np.maximum(d2, 0.0))


def _dissimilarity_block(feats: np.ndarray, ref: np.ndarray, mean_d: float) -> np.ndarray:
    """Dissimilarity index of the cells of one block ``(C, h, w)`` -> ``(h, w)`` float32."""
    c, h, w = feats.shape
    x = np.asarray(feats, np.float32).reshape(c, -1).T
    ok = np.isfinite(x).all(axis=1)
    out = np.full(h * w, np.nan, np.float64)
    if ok.any():
        out[ok] = nearest_distance(x[ok], ref) / mean_d
    return out.reshape(h, w).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class AoaRule:
    """What judging cells against a model's area of applicability needs (small, picklable:
    a tile task of :func:`~geochem_sr.inference.predict_to_zarr` carries it; compared and
    hashed by identity, as it holds an array).

    Attributes
    ----------
    reference : numpy.ndarray
        ``(m, C)`` normalised inputs of the training reference cells.
    mean_distance : float
        Mean distance between reference cells (the dissimilarity index's unit).
    threshold : float
        Largest dissimilarity inside.
    units_inside : tuple of int or None
        Lithology codes inside (the units seen in training); None: not checked (no
        lithology in the dataset).
    lithology_note : str
        What the lithology check does, in words.
    method : str
        How the threshold was fitted (``model.aoa["method"]``).
    """

    reference: np.ndarray
    mean_distance: float
    threshold: float
    units_inside: tuple[int, ...] | None
    lithology_note: str
    method: str

    def dissimilarity(self, feats: np.ndarray) -> np.ndarray:
        """Dissimilarity index of the cells of normalised inputs ``(C, h, w)`` -> ``(h, w)``
        float32 (NaN where an input is missing)."""
        return _dissimilarity_block(feats, self.reference, self.mean_distance)

    def inside(self, dissim: np.ndarray, lithology: np.ndarray | None = None) -> np.ndarray:
        """The ``aoa`` flag of cells of dissimilarity ``dissim`` (and lithology codes
        ``lithology``, needed when :attr:`units_inside` is not None)."""
        flag = np.isfinite(dissim) & (dissim <= np.float32(self.threshold))
        if self.units_inside is not None:
            flag &= np.isin(lithology, list(self.units_inside))
        return flag


def aoa_rule(ds: xr.Dataset, model: GeoSRModel) -> AoaRule:
    """The area-of-applicability rule of a calibrated model on a survey dataset.

    Raises
    ------
    ModelMismatchError
        The model has no AOA reference, or it was built for other channels.

    Warns
    -----
    UserWarning
        None of the training lithology units is in the dataset's legend.
    """
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
    units: tuple[int, ...] | None = None
    lith_note = "not checked (no lithology in the dataset)"
    if schema.LITHOLOGY in ds.data_vars:
        from geochem_sr.features.geology import legend_codes, unit_labels

        lith = ds[schema.LITHOLOGY]
        seen = set(aoa.get("lithology_seen", []))
        candidates = legend_codes(lith)
        labels = unit_labels(lith, candidates)
        units = tuple(int(c) for c, label in zip(candidates, labels, strict=True)
                      if label in seen)
        unseen = sorted(set(labels) - seen)
        lith_note = f"units not seen in training are outside (known unseen units: {unseen})"
        if seen and not units:
            warnings.warn("applicability: none of the training lithology units is in this "
                          "dataset's legend; every cell is outside the area of applicability",
                          UserWarning, stacklevel=3)
    return AoaRule(np.asarray(aoa["reference"], np.float64), float(aoa["mean_distance"]),
                   float(np.float32(aoa["threshold"])), units, lith_note,
                   str(aoa.get("method", "")))


def applicability_attrs(rule: AoaRule) -> tuple[dict, dict, dict]:
    """Attributes of ``dissimilarity``, of ``aoa`` and of their dataset."""
    dissim = {
        "long_name": "dissimilarity index (Meyer & Pebesma 2021)",
        "units": "1",
        "threshold": rule.threshold,
        "description": ("distance in normalised input space to the nearest training "
                        "reference cell / mean distance between reference cells"),
    }
    flag = {
        "long_name": "inside the area of applicability",
        "description": ("True where the dissimilarity index is at most the threshold "
                        f"({rule.threshold:.4g}), every input is present, and the lithology "
                        "was seen in training"),
        "lithology": rule.lithology_note,
    }
    return dissim, flag, {"geochem_sr_aoa_threshold": rule.threshold,
                          "geochem_sr_aoa_method": rule.method}


def applicability(ds: xr.Dataset, model: GeoSRModel) -> xr.Dataset:
    """Dissimilarity index and area-of-applicability flag of every cell.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with the model's input variables (numpy or dask backed; on dask
        the result is lazy, one nearest-neighbour search per chunk, equal to numpy).
    model : GeoSRModel
        A calibrated model (:func:`geochem_sr.trust.calibrate` fills ``model.aoa``).

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

    rule = aoa_rule(ds, model)
    ds = prepare_inputs(ds, model)
    feats = stack_inputs(ds, model.channels, model.norm_stats)
    data = feats.data
    if isinstance(data, dsa.Array):
        data = data.rechunk({0: -1})
        di = dsa.map_blocks(_dissimilarity_block, data, ref=rule.reference,
                            mean_d=rule.mean_distance, drop_axis=0, dtype=np.float32,
                            meta=np.empty((0, 0), np.float32))
    else:
        di = rule.dissimilarity(np.asarray(data))
    coords = {k: v for k, v in feats.coords.items() if k != "channel"}
    dissim = xr.DataArray(di, dims=(schema.Y, schema.X), coords=coords,
                          name=schema.DISSIMILARITY)
    flag = dissim.notnull() & (dissim <= np.float32(rule.threshold))
    if rule.units_inside is not None:
        flag = flag & ds[schema.LITHOLOGY].isin(list(rule.units_inside))
    dissim_attrs, flag_attrs, attrs = applicability_attrs(rule)
    dissim.attrs = dissim_attrs
    flag = flag.rename(schema.AOA)
    flag.attrs = flag_attrs
    out = xr.Dataset({schema.DISSIMILARITY: dissim, schema.AOA: flag})
    out.attrs = attrs
    crs = ds.rio.crs if schema.SPATIAL_REF in ds.coords else None
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out
