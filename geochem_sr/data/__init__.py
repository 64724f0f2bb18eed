"""Data to try the method on: a synthetic survey area and bundled real survey data.

* :mod:`~geochem_sr.data.synthetic`: the synthetic region (raw inputs and the truth).
* :mod:`~geochem_sr.data.meuse`: the Meuse samples and the survey inputs built from them.
* :mod:`~geochem_sr.data.derived`: stand-ins built from a sample table (thinned survey,
  elevation surface, unit polygons).
"""

from geochem_sr.data.derived import (
    RealSurveyInputs,
    elevation_surface,
    thin_samples,
    voronoi_units,
)
from geochem_sr.data.meuse import (
    MEUSE_CRS,
    MEUSE_ELEMENTS,
    MEUSE_FLOOD_CLASSES,
    MEUSE_SOIL_UNITS,
    load_meuse,
    meuse_inputs,
    meuse_path,
)
from geochem_sr.data.synthetic import SyntheticRegion, synthetic_region

__all__ = [
    "MEUSE_CRS",
    "MEUSE_ELEMENTS",
    "MEUSE_FLOOD_CLASSES",
    "MEUSE_SOIL_UNITS",
    "RealSurveyInputs",
    "SyntheticRegion",
    "elevation_surface",
    "load_meuse",
    "meuse_inputs",
    "meuse_path",
    "synthetic_region",
    "thin_samples",
    "voronoi_units",
]
