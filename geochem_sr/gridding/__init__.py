"""Gridding: point samples -> element maps on the survey grid, in log10 space.

Local inverse-distance weighting or ordinary kriging with the ``k`` nearest samples, with a
variogram fitted per element (spherical, exponential or gaussian) or given.

* :mod:`~geochem_sr.gridding.grid`: :func:`grid_samples`, the survey-grid entry point.
* :mod:`~geochem_sr.gridding.retune`: :func:`retune_interpolation`, the settings per element
  that best reproduce a denser survey's map on the cells given to tune on.
* :mod:`~geochem_sr.gridding.points`: :func:`krige_points`, :func:`idw_points` at any points.
* :mod:`~geochem_sr.gridding.variogram`: semivariance, empirical variogram and its fit.
* :mod:`~geochem_sr.gridding.samples`: element columns, coordinates, log10 values, duplicates.
* :mod:`~geochem_sr.gridding.plan`: the plan (groups, variograms, tiles), numpy or dask blocks.
* :mod:`~geochem_sr.gridding.neighbours`: the ``k`` nearest samples of cells, in tiles.
* :mod:`~geochem_sr.gridding.estimate`: kriging and IDW estimates from neighbour arrays.
* :mod:`~geochem_sr.gridding.kernels`, :mod:`~geochem_sr.gridding.knn_kernels`,
  :mod:`~geochem_sr.gridding.krige_kernels`: the numba kernels, jitted on first use.
"""

from geochem_sr.gridding.grid import (
    CONCENTRATION,
    COVERAGE,
    COVERAGE_FACTOR,
    LOG10_VARIANCE,
    METHODS,
    grid_samples,
    neighbourhood_reach,
)
from geochem_sr.gridding.points import idw_points, krige_points
from geochem_sr.gridding.retune import RETUNE_SETTINGS, retune_interpolation
from geochem_sr.gridding.samples import DUPLICATE_TOLERANCE
from geochem_sr.gridding.variogram import (
    VARIOGRAM_MODELS,
    empirical_variogram,
    fit_variogram,
    semivariance,
)

__all__ = [
    "CONCENTRATION",
    "COVERAGE",
    "COVERAGE_FACTOR",
    "DUPLICATE_TOLERANCE",
    "LOG10_VARIANCE",
    "METHODS",
    "RETUNE_SETTINGS",
    "VARIOGRAM_MODELS",
    "empirical_variogram",
    "fit_variogram",
    "grid_samples",
    "neighbourhood_reach",
    "retune_interpolation",
    "idw_points",
    "krige_points",
    "semivariance",
]
