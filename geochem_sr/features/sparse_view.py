"""What the sparse survey sees of each covariate: ``lr_sites`` and ``lr_view``.

:func:`site_counts` records the sparse sites on the grid; :func:`lr_view` interpolates each
covariate channel from those sites back onto the grid, from which the ``unseen:<c>``
channels are computed (:func:`geochem_sr.features.stacking.raw_channel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, SchemaError
from geochem_sr.features.names import covariate_channels
from geochem_sr.features.stacking import raw_channel

__all__ = ["DEFAULT_K", "site_counts", "lr_view", "add_lr_view", "refresh_lr_view"]

#: Sites each interpolated cell uses (inverse-distance weights, power 2).
DEFAULT_K = 16


def site_counts(samples: Any, grid: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """Number of samples in each grid cell.

    Parameters
    ----------
    samples : GeoDataFrame
        Sample points (reprojected to the grid's CRS); points off the grid are ignored.
    grid : xarray.Dataset or DataArray
        The survey grid.

    Returns
    -------
    xarray.DataArray
        ``lr_sites`` ``(y, x)`` int16.
    """
    schema.check_crs(grid, "grid")
    pts = samples.to_crs(grid.rio.crs).geometry
    t = grid.rio.transform(recalc=True)
    ny, nx = grid.sizes[schema.Y], grid.sizes[schema.X]
    col = np.floor((pts.x.to_numpy() - t.c) / t.a).astype(np.int64)
    row = np.floor((pts.y.to_numpy() - t.f) / t.e).astype(np.int64)
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    counts = np.zeros((ny, nx), np.int16)
    np.add.at(counts, (row[ok], col[ok]), 1)
    out = xr.DataArray(counts, dims=(schema.Y, schema.X),
                       coords={schema.Y: grid[schema.Y], schema.X: grid[schema.X]},
                       name=schema.LR_SITES,
                       attrs={"long_name": "number of sparse-survey samples in the cell"})
    return out.rio.write_crs(grid.rio.crs)


def _sites(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    if schema.LR_SITES not in ds.data_vars:
        raise SchemaError(
            f"variable '{schema.LR_SITES}': needed to see covariates as the sparse survey "
            "does, but missing; geochem_sr.build_survey records it, or add "
            "geochem_sr.features.site_counts(samples_sparse, ds)"
        )
    rows, cols = np.nonzero(np.asarray(ds[schema.LR_SITES].values) > 0)
    if rows.size == 0:
        raise DataError(f"variable '{schema.LR_SITES}': expected sample sites, found none")
    return rows, cols


def _interpolate(xy: np.ndarray, values: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                 k: int) -> np.ndarray:
    """IDW of each covariate's site values onto the cells ``ys x xs``: (C, ny, nx)."""
    from geochem_sr.gridding import idw_points

    gx, gy = np.meshgrid(xs, ys)
    q = np.c_[gx.ravel(), gy.ravel()]
    out = np.full((values.shape[0], ys.size, xs.size), np.nan, np.float32)
    ok = np.isfinite(values)
    full = [i for i in range(values.shape[0]) if ok[i].all()]
    if full:  # covariates finite at every site share one neighbour search
        est = idw_points(xy, values[full], q, k=min(k, len(xy)))
        out[full] = np.asarray(est).reshape(len(full), ys.size, xs.size)
    for i in sorted(set(range(values.shape[0])) - set(full)):
        est = idw_points(xy[ok[i]], values[i][ok[i]], q, k=min(k, int(ok[i].sum())))
        out[i] = est.reshape(ys.size, xs.size)
    return out


def lr_view(
    ds: xr.Dataset,
    covariates: Sequence[str] | None = None,
    k: int = DEFAULT_K,
) -> xr.DataArray:
    """Each covariate channel as the sparse survey sees it.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr_sites`` and the covariates (numpy or dask).
    covariates : sequence of str, optional
        Covariate channel names (:func:`~geochem_sr.features.names.covariate_channels`; default
        all that ``ds`` provides).
    k : int, default 16
        Sites per interpolated cell.

    Returns
    -------
    xarray.DataArray
        ``lr_view`` ``(covariate, y, x)`` float32, NaN where the covariate is NaN; lazy
        (chunked like the covariates) on dask input.

    Notes
    -----
    Each covariate is sampled at the cells with ``lr_sites > 0`` and interpolated back
    onto the grid by inverse-distance weighting (power 2) of the ``k`` nearest sites. On
    dask input the covariates are read at the sites at once (a small, eager read), and the
    interpolation onto the grid is lazy, chunk by chunk; numpy and dask give equal results.

    Examples
    --------
    >>> import geochem_sr as gs
    >>> region = gs.synthetic_region(seed=0, size_km=(3, 3))
    >>> ds = gs.build_survey(region.samples_sparse, dem=region.dem, method="idw")
    >>> view = lr_view(ds, ["elevation"])
    >>> view.dims, int(ds.lr_sites.sum()) == len(region.samples_sparse)
    (('covariate', 'y', 'x'), True)
    """
    covariates = list(covariates) if covariates is not None else covariate_channels(ds)
    if not covariates:
        raise SchemaError("covariates: expected at least one covariate channel, found none")
    rows, cols = _sites(ds)
    raw = xr.concat([raw_channel(ds, c).astype(np.float32) for c in covariates],
                    dim=schema.COVARIATE, coords="minimal", compat="override")
    raw = raw.transpose(schema.COVARIATE, schema.Y, schema.X)
    site_values = np.asarray(
        raw.isel({schema.Y: xr.DataArray(rows), schema.X: xr.DataArray(cols)}).values,
        np.float64)
    empty = [c for c, v in zip(covariates, site_values, strict=True) if not np.isfinite(v).any()]
    if empty:
        raise DataError(
            f"covariates {empty}: no finite value at any sparse-survey site "
            f"('{schema.LR_SITES}'), so the sparse survey sees nothing of them"
        )
    xs, ys = ds[schema.X].values, ds[schema.Y].values
    xy = np.c_[xs[cols], ys[rows]]
    if raw.chunks is None:
        data: Any = _interpolate(xy, site_values, xs, ys, k)
    else:
        import dask.array as dsa

        def block(block_info: dict | None = None) -> np.ndarray:
            (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
            return _interpolate(xy, site_values, xs[x0:x1], ys[y0:y1], k)

        data = dsa.map_blocks(block, chunks=((len(covariates),), *raw.chunks[1:]),
                              dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    seen = xr.DataArray(data, dims=raw.dims, coords={
        schema.COVARIATE: covariates, schema.Y: ds[schema.Y], schema.X: ds[schema.X]})
    seen = seen.where(raw.notnull())
    seen.name = schema.LR_VIEW
    seen.attrs = {"long_name": "covariates interpolated from the sparse-survey sites",
                  "method": f"inverse distance weighting, {k} nearest sites, power 2"}
    return seen.rio.write_crs(ds.rio.crs) if ds.rio.crs is not None else seen


def add_lr_view(ds: xr.Dataset, covariates: Sequence[str] | None = None,
                k: int = DEFAULT_K) -> xr.Dataset:
    """A copy of ``ds`` with a new ``lr_view`` (see :func:`lr_view`) replacing any old one
    and its ``covariate`` coordinate; ``ds`` is not changed."""
    view = lr_view(ds, covariates, k)
    out = ds.drop_vars([schema.LR_VIEW, schema.COVARIATE], errors="ignore")
    out[schema.LR_VIEW] = view
    return out


def refresh_lr_view(ds: xr.Dataset) -> xr.Dataset:
    """Recompute an existing ``lr_view`` after its covariates changed (re-embedded geology,
    new terrain); a dataset without one, or without ``lr_sites``, is returned unchanged
    less any stale view."""
    if schema.LR_VIEW not in ds.data_vars:
        return ds
    have = set(covariate_channels(ds))
    keep = [str(c) for c in ds[schema.COVARIATE].values if str(c) in have]
    if schema.LR_SITES not in ds.data_vars or not keep:
        return ds.drop_vars([schema.LR_VIEW, schema.COVARIATE], errors="ignore")
    return add_lr_view(ds, keep)
