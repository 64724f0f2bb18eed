"""Cloud-Optimized GeoTIFFs of a survey or prediction dataset, for any GIS.

:func:`export_geotiffs` writes one COG per variable through rioxarray and GDAL's COG
driver: one band per element, named ``"<element> (<unit>)"``, NaN as nodata, internal
overviews. Every GDAL reads a GeoTIFF's georeferencing the same way (Debian's GDAL 3.6, the
QGIS it serves, and rasterio's newer one), which is not yet true of Zarr.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import CRSError, InputFileError, SchemaError

__all__ = ["DEFAULT_EXPORT", "export_geotiffs"]

#: Variables exported when none are named (those present).
DEFAULT_EXPORT: tuple[str, ...] = (schema.HR_PRED, schema.HR_PRED_STD, schema.AOA,
                                   schema.DISSIMILARITY)


def _band_names(da: xr.DataArray, ds: xr.Dataset) -> list[str]:
    """``"<element> (<unit>)"`` per band, or the variable's long name and unit."""
    unit = da.attrs.get("units")
    if schema.ELEMENT in da.dims:
        elements = [str(e) for e in da[schema.ELEMENT].values]
        units = [str(u) for u in ds[schema.ELEMENT_UNITS].values] \
            if schema.ELEMENT_UNITS in ds.variables else []
        if unit and unit != "see element_units":
            units = [str(unit)] * len(elements)
        return [f"{e} ({u})" if u else e for e, u in zip(elements, units or [""] * len(elements),
                                                      strict=True)]
    name = str(da.attrs.get("long_name", da.name))
    return [f"{name} ({unit})" if unit else name]


def _as_bands(da: xr.DataArray) -> xr.DataArray:
    """``(band, y, x)`` float32 with NaN where there is no value."""
    if schema.ELEMENT in da.dims:
        da = da.transpose(schema.ELEMENT, schema.Y, schema.X)
    else:
        da = da.transpose(schema.Y, schema.X).expand_dims("band")
    fill = da.attrs.get("_FillValue", da.encoding.get("_FillValue"))
    out = da.astype(np.float32)
    if fill is not None and np.issubdtype(da.dtype, np.integer):
        out = out.where(da != fill)
    return out


def export_geotiffs(
    ds: xr.Dataset,
    out_dir: str | os.PathLike,
    variables: Sequence[str] | None = None,
    *,
    clip_to_aoa: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Write each variable as a Cloud-Optimized GeoTIFF ``<out_dir>/<variable>.tif``.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey or prediction dataset (e.g. :func:`geochem_sr.open_survey` of a store) with
        its CRS.
    out_dir : path
        Folder of the files (created).
    variables : sequence of str, optional
        Default: those of :data:`DEFAULT_EXPORT` present in ``ds``.
    clip_to_aoa : bool, default False
        Set cells outside the area of applicability (``aoa`` false) to nodata in the
        element maps.
    overwrite : bool, default False
        Replace existing files.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``variables``.

    Raises
    ------
    CRSError
        ``ds`` has no CRS.
    SchemaError
        A variable is missing, not on the ``(y, x)`` grid, or ``clip_to_aoa`` without ``aoa``.
    InputFileError
        A file exists and ``overwrite`` is False (nothing is written then).

    Examples
    --------
    >>> export_geotiffs(gs.open_survey("prediction.zarr"), "gis")  # doctest: +SKIP
    [PosixPath('gis/hr_pred.tif'), PosixPath('gis/hr_pred_std.tif'), ...]
    """
    import rioxarray  # noqa: F401  (registers .rio)

    crs = ds.rio.crs
    if crs is None:
        raise CRSError("dataset: expected a CRS (spatial_ref), found none; open the store with "
                       "geochem_sr.open_survey, or assign one with ds.rio.write_crs")
    names = [v for v in DEFAULT_EXPORT if v in ds.data_vars] if variables is None \
        else list(variables)
    if not names:
        raise SchemaError(f"variables: none of {list(DEFAULT_EXPORT)} in the dataset; name "
                          f"some of {sorted(map(str, ds.data_vars))}")
    for v in names:
        if v not in ds.data_vars:
            raise SchemaError(f"variable '{v}': not in the dataset "
                              f"(found {sorted(map(str, ds.data_vars))})")
        if not {schema.Y, schema.X} <= set(ds[v].dims) or ds[v].ndim > 3 or (
                ds[v].ndim == 3 and schema.ELEMENT not in ds[v].dims):
            raise SchemaError(f"variable '{v}': expected dims (y, x) or (element, y, x), "
                              f"found {ds[v].dims}")
    if clip_to_aoa and schema.AOA not in ds.data_vars:
        raise SchemaError("clip_to_aoa: the dataset has no 'aoa' variable (predict with "
                          "uncertainty on a calibrated model)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{v}.tif" for v in names]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise InputFileError(f"{existing}: exist; pass overwrite=True to replace them")
    inside = ds[schema.AOA].astype(bool) if clip_to_aoa else None
    for v, path in zip(names, paths, strict=True):
        da = ds[v]
        bands = _as_bands(da)
        if inside is not None and schema.ELEMENT in da.dims:
            bands = bands.where(inside)
        bands.attrs = {"long_name": tuple(_band_names(da, ds))}
        unit = da.attrs.get("units")
        if unit and unit != "see element_units":
            bands.attrs["units"] = str(unit)
        bands = bands.rio.write_crs(crs).rio.write_nodata(np.nan, encoded=False)
        block = 256 if max(bands.shape[-2:]) >= 1024 else 64  # overviews down to one block
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            bands.compute().rio.to_raster(tmp, driver="COG", compress="DEFLATE",
                                          overview_resampling="average", BLOCKSIZE=block)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return paths
