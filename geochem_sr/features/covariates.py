"""Covariates changed on a survey dataset, with its ``lr_view`` seen again from the sparse
sites: :func:`add_terrain` and :func:`embed_geology`.

The functions of :mod:`geochem_sr.covariates` know nothing of the stages above them and
leave a stale ``lr_view`` for the caller to refresh; these do both steps (and are what
``ds.geosr.add_terrain()`` and ``ds.geosr.embed_geology()`` call). The covariates are
imported on first use, so importing the features stays cheap.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from geochem_sr.features.sparse_view import refresh_lr_view

__all__ = ["add_terrain", "embed_geology"]


def add_terrain(ds: xr.Dataset) -> xr.Dataset:
    """Add ``slope`` and ``aspect`` from ``elevation``; refresh ``lr_view``.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset holding ``elevation``.

    Returns
    -------
    xarray.Dataset
        :func:`geochem_sr.covariates.add_terrain` of ``ds``, with its ``lr_view`` (if it
        has one) recomputed from the new covariates
        (:func:`geochem_sr.features.refresh_lr_view`).

    Examples
    --------
    >>> ds = add_terrain(ds)  # doctest: +SKIP
    """
    from geochem_sr.covariates import add_terrain as terrain

    return refresh_lr_view(terrain(ds))


def embed_geology(ds: xr.Dataset, geology: Any = None, **kwargs: Any) -> xr.Dataset:
    """Rasterize and embed the geology; refresh ``lr_view``.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset.
    geology : geopandas.GeoDataFrame, optional
        Unit polygons; default: re-embed ``ds["lithology"]``.
    **kwargs
        Passed to :func:`geochem_sr.covariates.embed_geology` (``unit_column``,
        ``vector_size``, ``seed``, ``vocabulary``, ...).

    Returns
    -------
    xarray.Dataset
        :func:`geochem_sr.covariates.embed_geology` of ``ds``, with its ``lr_view`` (if it
        has one) recomputed from the new embedding
        (:func:`geochem_sr.features.refresh_lr_view`).

    Examples
    --------
    >>> ds = embed_geology(ds, geology, seed=0)  # doctest: +SKIP
    """
    from geochem_sr.covariates import embed_geology as embed

    return refresh_lr_view(embed(ds, geology, **kwargs))
