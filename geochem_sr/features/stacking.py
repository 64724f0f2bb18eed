"""Stacking: a survey dataset's variables turned into named input channels, and the target.

:func:`raw_channel` computes one channel (log10 of ``lr``, the aspect vector, the distance
transform, ``unseen:`` differences); :func:`stack_inputs` stacks them, :func:`normalise`
scales them, :func:`target_residual` is the training target ``log10(hr) - log10(lr)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import ParameterError, SchemaError
from geochem_sr.features.names import (
    ASPECT_COS,
    ASPECT_SIN,
    CHANNEL,
    EMBEDDING_PREFIX,
    LR_PREFIX,
    UNSEEN_PREFIX,
)

__all__ = ["DISTANCE_SCALE", "raw_channel", "stack_inputs", "normalise", "target_residual"]

#: Length scale of the distance channels' transform ``log10(1 + d / scale)``, metres.
DISTANCE_SCALE = 100.0


def _require_var(ds: xr.Dataset, var: str, channel: str) -> xr.DataArray:
    if var not in ds.data_vars:
        raise SchemaError(
            f"channel '{channel}': needs variable '{var}', which is missing "
            f"(found {sorted(map(str, ds.data_vars))})"
        )
    return ds[var]


def _element(da: xr.DataArray, var: str, el: str) -> xr.DataArray:
    have = [str(e) for e in da[schema.ELEMENT].values]
    if el not in have:
        raise SchemaError(f"variable '{var}': expected element '{el}', found {have}")
    return da.isel({schema.ELEMENT: have.index(el)}, drop=True)


def _log10(da: xr.DataArray) -> xr.DataArray:
    """log10 of positive values, NaN elsewhere (lazy on dask)."""
    da = da.astype(np.float32)
    return np.log10(da.where(da > 0))


def _aspect_component(ds: xr.Dataset, name: str) -> xr.DataArray:
    aspect = _require_var(ds, schema.ASPECT, name).astype(np.float32)
    rad = np.deg2rad(aspect)
    comp = np.sin(rad) if name == ASPECT_SIN else np.cos(rad)
    flat = aspect.isnull()
    if schema.ELEVATION in ds.data_vars:  # no elevation -> missing, not flat
        flat = flat & ds[schema.ELEVATION].notnull()
    return comp.where(~flat, np.float32(0.0))


def raw_channel(ds: xr.Dataset, name: str) -> xr.DataArray:
    """One un-normalised input channel of ``ds`` by name (see :func:`stack_inputs`).

    ``lr:<El>`` is in log10, the aspect channels are the unit vector's components (0 on
    flats), the distance channels ``log10(1 + d / DISTANCE_SCALE)``, and ``unseen:<c>`` is
    channel ``c`` minus its ``lr_view``. Lazy on dask input.

    Raises
    ------
    SchemaError
        The name is unknown, or ``ds`` lacks the variable, element or covariate it needs.
    """
    if name.startswith(UNSEEN_PREFIX):  # first: unseen aspect names are directional too
        base = name[len(UNSEEN_PREFIX):]
        view = _require_var(ds, schema.LR_VIEW, name)
        have = [str(c) for c in view[schema.COVARIATE].values]
        if base not in have:
            raise SchemaError(
                f"channel '{name}': variable '{schema.LR_VIEW}' lacks covariate '{base}' "
                f"(found {have}); compute it with geochem_sr.add_lr_view(ds)"
            )
        seen = view.isel({schema.COVARIATE: have.index(base)}, drop=True)
        return raw_channel(ds, base) - seen
    if name.startswith(LR_PREFIX):
        lr = _require_var(ds, schema.LR, name)
        return _log10(_element(lr, schema.LR, name[len(LR_PREFIX):]))
    if name in (schema.ELEVATION, schema.SLOPE):
        return _require_var(ds, name, name)
    if name in (ASPECT_SIN, ASPECT_COS):
        return _aspect_component(ds, name)
    if name.startswith(EMBEDDING_PREFIX):
        emb = _require_var(ds, schema.GEOLOGY_EMBEDDING, name)
        i = int(name[len(EMBEDDING_PREFIX):])
        n = emb.sizes[schema.EMBEDDING]
        if not 0 <= i < n:
            raise SchemaError(
                f"channel '{name}': variable '{schema.GEOLOGY_EMBEDDING}' has {n} dimensions, "
                f"expected at least {i + 1}"
            )
        return emb.isel({schema.EMBEDDING: i}, drop=True)
    if name in (schema.FAULT_DISTANCE, schema.CONTACT_DISTANCE):
        d = _require_var(ds, name, name).astype(np.float32)
        return np.log10(1 + d.clip(min=0) / np.float32(DISTANCE_SCALE))
    raise SchemaError(
        f"channel '{name}': expected 'lr:<El>', 'elevation', 'slope', 'aspect_sin', "
        "'aspect_cos', 'embedding:<i>', 'fault_distance', 'contact_distance' or "
        "'unseen:<covariate>'"
    )


def stack_inputs(
    ds: xr.Dataset,
    channels: Sequence[str],
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> xr.DataArray:
    """Stack the named input channels of a survey dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (numpy- or dask-backed).
    channels : sequence of str
        Channel names (:func:`channel_names`).
    stats : mapping, optional
        Channel -> ``(mean, std)``; when given every channel is normalised
        ``(x - mean) / std``.

    Returns
    -------
    xarray.DataArray
        Dims ``("channel", "y", "x")``, float32, coordinate ``channel`` holding the names,
        the grid's x/y and CRS. ``lr`` is in log10. NaN wherever an input is missing (e.g.
        outside the ``lr`` coverage, or non-positive concentrations), so callers can mask.
        Lazy on dask input (nothing is computed), equal to the numpy path.

    Raises
    ------
    SchemaError
        A channel needs a variable or an element the dataset lacks, or ``stats`` lacks a
        channel.
    """
    channels = [str(c) for c in channels]
    if not channels:
        raise ParameterError("channels: expected at least one channel name, found none")
    if len(set(channels)) != len(channels):
        raise ParameterError(f"channels: expected unique names, found {channels}")
    pieces = []
    for name in channels:
        da = raw_channel(ds, name).astype(np.float32)
        extra = [c for c in da.coords if c not in (schema.X, schema.Y, schema.SPATIAL_REF)]
        pieces.append(da.drop_vars(extra).transpose(schema.Y, schema.X))
    out = xr.concat(pieces, dim=CHANNEL, coords="minimal", compat="override", join="exact")
    out = out.assign_coords({CHANNEL: channels}).astype(np.float32)
    out.name = "inputs"
    out.attrs = {"long_name": "model input channels", "lr_transform": "log10"}
    return out if stats is None else normalise(out, stats)


def normalise(
    stacked: xr.DataArray, stats: Mapping[str, tuple[float, float]]
) -> xr.DataArray:
    """Normalise stacked inputs ``(x - mean) / std`` per channel, in float32.

    The one place where normalisation happens, so that training and inference give
    bit-identical inputs. Lazy on dask input.

    Parameters
    ----------
    stacked : xarray.DataArray
        Un-normalised inputs ``(channel, y, x)`` from :func:`stack_inputs`.
    stats : mapping
        Channel -> ``(mean, std)``, e.g. from
        :func:`~geochem_sr.features.statistics.fit_normalisation`.

    Returns
    -------
    xarray.DataArray
        Same dims and coords, float32, attr ``normalised = 1``.
    """
    names = [str(c) for c in stacked[CHANNEL].values]
    missing = [c for c in names if c not in stats]
    if missing:
        raise SchemaError(
            f"stats: expected normalisation statistics for channels {missing}, "
            f"found them for {sorted(stats)}"
        )
    mean = xr.DataArray(np.array([stats[c][0] for c in names], np.float32), dims=CHANNEL)
    std = xr.DataArray(np.array([stats[c][1] for c in names], np.float32), dims=CHANNEL)
    out = ((stacked - mean) / std).astype(np.float32)
    out.name = stacked.name
    out.attrs = {**stacked.attrs, "normalised": 1}
    return out


def target_residual(ds: xr.Dataset, elements: Sequence[str] | None = None) -> xr.DataArray:
    """The training target ``log10(hr) - log10(lr)`` per element.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr`` and ``hr``.
    elements : sequence of str, optional
        Elements, in order (default: all of ``ds.element``).

    Returns
    -------
    xarray.DataArray
        Dims ``("element", "y", "x")``, float32; NaN where either map is NaN or not positive.
        Lazy on dask input.
    """
    lr = _require_var(ds, schema.LR, "target")
    hr = _require_var(ds, schema.HR, "target")
    if elements is None:
        elements = [str(e) for e in ds[schema.ELEMENT].values]
    elements = [str(e) for e in elements]
    for var, da in ((schema.LR, lr), (schema.HR, hr)):
        have = [str(e) for e in da[schema.ELEMENT].values]
        missing = [e for e in elements if e not in have]
        if missing:
            raise SchemaError(f"variable '{var}': expected elements {missing}, found {have}")
    sel = {schema.ELEMENT: elements}
    res = _log10(hr.sel(sel)) - _log10(lr.sel(sel))
    res = res.transpose(schema.ELEMENT, schema.Y, schema.X).astype(np.float32)
    res.name = "residual"
    res.attrs = {"long_name": "log10(hr) - log10(lr)", "units": "log10"}
    return res
