"""Input and output: samples, DEM, geology and faults in; survey and prediction Zarr stores.

* :mod:`~geochem_sr.io.samples`: geochemical samples (CSV, GPKG, SHP) with censored values.
* :mod:`~geochem_sr.io.rasters`: the DEM.
* :mod:`~geochem_sr.io.vectors`: geological polygons and mapped faults.
* :mod:`~geochem_sr.io.stores`: survey and prediction Zarr stores (atomic writes, checks
  on open).
"""

from geochem_sr.io.files import write_file_atomically
from geochem_sr.io.rasters import read_dem
from geochem_sr.io.samples import CENSORING_POLICIES, parse_censored, read_samples
from geochem_sr.io.stores import (
    MANIFEST,
    check_manifest,
    decode_attrs,
    gis_attrs,
    open_survey,
    prepare_for_zarr,
    store_fingerprint,
    write_manifest,
    write_store_atomically,
    write_survey,
)
from geochem_sr.io.vectors import read_faults, read_geology

__all__ = [
    "CENSORING_POLICIES",
    "parse_censored",
    "read_samples",
    "read_dem",
    "read_geology",
    "read_faults",
    "write_survey",
    "open_survey",
    "write_store_atomically",
    "write_file_atomically",
    "gis_attrs",
    "prepare_for_zarr",
    "decode_attrs",
    "store_fingerprint",
    "write_manifest",
    "check_manifest",
    "MANIFEST",
]
