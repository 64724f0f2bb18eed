"""The synthetic survey area a user gets: raw inputs and the noise-free truth.

:func:`synthetic_region` returns a DEM, a geological map, faults and two stream-sediment
surveys (point tables with censored lab values), plus ``truth`` on the survey grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.data.synthetic.fields import (
    ModelGrid,
    log10_concentration,
    polygonize,
    simulate,
    stream_rng,
)
from geochem_sr.data.synthetic.tables import DETECTION_LIMITS, ELEMENTS, LAB_RSD
from geochem_sr.errors import GridError, ParameterError

__all__ = ["DEFAULT_ELEMENTS", "SyntheticRegion", "synthetic_region"]

DEFAULT_ELEMENTS = schema.DEFAULT_ELEMENTS


@dataclass(frozen=True, eq=False)
class SyntheticRegion:
    """Raw inputs of a synthetic survey area and its noise-free truth.

    See :func:`synthetic_region` for the model and the meaning of each field.
    """

    dem: xr.DataArray
    geology: gpd.GeoDataFrame
    faults: gpd.GeoDataFrame
    samples_sparse: gpd.GeoDataFrame
    samples_dense: gpd.GeoDataFrame
    truth: xr.DataArray
    bounds: tuple[float, float, float, float]
    crs: str
    cell_size: float
    elements: tuple[str, ...]
    units: dict[str, str]
    detection_limits: dict[str, float]
    seed: int


def _sites(rng: np.random.Generator, extent: tuple[float, ...], density: float) -> np.ndarray:
    """Sites jittered around a regular lattice of ``density`` per km² inside ``extent``."""
    xmin, ymin, xmax, ymax = extent
    spacing = 1000.0 / np.sqrt(density)
    nx, ny = max(1, round((xmax - xmin) / spacing)), max(1, round((ymax - ymin) / spacing))
    dx, dy = (xmax - xmin) / nx, (ymax - ymin) / ny
    gx, gy = np.meshgrid(xmin + dx * (np.arange(nx) + 0.5), ymax - dy * (np.arange(ny) + 0.5))
    jitter = np.clip(rng.normal(0, 0.25, (2, gx.size)), -0.45, 0.45)
    return np.c_[gx.ravel() + jitter[0] * dx, gy.ravel() + jitter[1] * dy]


def _survey(rng: np.random.Generator, grid: ModelGrid, logc: np.ndarray, xy: np.ndarray,
            elements: tuple[str, ...], prefix: str, crs: str) -> gpd.GeoDataFrame:
    """Sample the fields at ``xy``, add lognormal lab noise, censor below detection limits."""
    idx = [ELEMENTS.index(e) for e in elements]
    values = 10 ** grid.sample(logc[idx], xy[:, 0], xy[:, 1])
    sigma = np.sqrt(np.log1p(np.array([LAB_RSD[e] for e in elements]) ** 2))[:, None]
    noise = rng.standard_normal((len(ELEMENTS), len(xy)))[idx]  # same draws for any subset
    values = values * np.exp(sigma * noise)
    cols: dict[str, object] = {"sample_id": [f"{prefix}-{i + 1:05d}" for i in range(len(xy))]}
    for e, v in zip(elements, values, strict=True):
        col = np.array([float(f"{a:.3g}") for a in v], dtype=object)  # 3 figures, as reported
        col[v < DETECTION_LIMITS[e]] = f"<{DETECTION_LIMITS[e]:g}"
        cols[e] = col
    gdf = gpd.GeoDataFrame(cols, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=crs)
    gdf.attrs = {"units": {e: schema.DEFAULT_UNITS[e] for e in elements},
                 "detection_limits": {e: DETECTION_LIMITS[e] for e in elements}}
    return gdf


def _check_args(size_km: tuple[float, float], cell_size: float, densities: tuple[float, float],
                dem_cell_size: float, elements: tuple[str, ...], seed: int) -> None:
    if len(size_km) != 2 or min(size_km) <= 0:
        raise GridError(f"size_km: expected two positive numbers (km), found {size_km!r}")
    if cell_size <= 0 or dem_cell_size <= 0:
        raise GridError(f"cell_size / dem_cell_size: expected > 0 m, found "
                        f"{cell_size!r} / {dem_cell_size!r}")
    if min(densities) <= 0:
        raise GridError(f"sparse_density / dense_density: expected > 0 samples/km², "
                        f"found {densities!r}")
    unknown = [e for e in elements if e not in ELEMENTS]
    if unknown or not elements:
        raise ParameterError(
            f"elements: expected a non-empty subset of {ELEMENTS}, found {elements!r}"
        )
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError(f"seed: expected a non-negative integer, found {seed!r}")


def synthetic_region(
    seed: int = 0,
    size_km: tuple[float, float] = (12.8, 12.8),
    cell_size: float = 50.0,
    sparse_density: float = 4.0,
    dense_density: float = 16.0,
    dense_extent: tuple[float, float, float, float] | None = None,
    dem_cell_size: float = 25.0,
    crs: str = "EPSG:32650",
    elements: tuple[str, ...] = DEFAULT_ELEMENTS,
    origin: tuple[float, float] = (500000.0, 4000000.0),
) -> SyntheticRegion:
    """Build a realistic synthetic stream-sediment survey area (same seed, same numbers).

    The model runs on a fine internal grid (``min(dem_cell_size, cell_size / 2)`` m) a little
    larger than the region; every component draws from its own ``SeedSequence([seed, k])``.

    * **Terrain** -- fractal relief (fBm with a k^-4 spectrum + ridged octaves + V-shaped
      valleys), 3000-3900 m; fault zones eroded into linear valleys (20-45 m); valley floors
      under Cenozoic fill smoothed.
    * **Geology** -- six formations of Table 2 stacked along a folded stratigraphic function
      (fold amplitude varying along a WNW strike) and offset across faults; six intrusions as
      thresholded smooth random fields, younger cutting older; Cenozoic sediments on low,
      concave, gentle ground. The unit raster is polygonized (rasterio + shapely).
    * **log10 concentration** = regional median (Table 3) + lithology offset (its own pattern
      per element, up to +-0.45) + skarn/greisen halos on the formation side of Triassic
      granodiorite/granite contacts (Cu-Zn-Pb-Mo-Bi / Sn-Bi-Mo-Pb; e-folding 200 m; patchy
      along the contact) + orogenic Au-As-Sb-Ag anomalies along faults (Gaussian cross-section
      100-200 m wide, ore shoots with barren gaps along strike); Cenozoic fill carries the
      400 m average of its surroundings, and everything geological is mixed over 75 m
      (catchments) + a terrain effect (elevation, topographic position, slope: valleys and
      gentle ground enriched, ~0.1 log10 per sd) + correlated Gaussian random fields
      (three latent suites: Au-As-Sb, Cu-Zn-Pb-Ag, Sn-Bi-Mo, plus element-specific parts) at
      3 km (sd 0.15), 800 m (0.07) and 200 m (0.07; Au 0.11) ranges.
    * **Samples** -- sites jittered around a lattice, independent for the two surveys;
      value = bilinear truth x lognormal lab noise (5-10 % RSD), 3 significant figures,
      below the detection limit written ``"<dl"``.

    What the dense survey adds is only partly predictable: with 500 m sparse spacing, about
    20-55 % (per element) of the variance of ``log10(truth) - log10(sparse map)`` comes from
    parts with fine detail in the covariates (lithology contacts, intrusion halos, terrain),
    0-30 % from the fault anomalies (faults show only as eroded valleys and geological
    offsets) and the rest from the 200 m / 800 m random fields, the sparse interpolation
    error and lab noise, which no covariate predicts.

    Parameters
    ----------
    seed : int, default 0
        Seed; every component draws from its own ``SeedSequence([seed, k])``.
    size_km : (float, float), default (12.8, 12.8)
        Width and height of the region in km.
    cell_size : float, default 50.0
        Cell size of the survey grid carrying ``truth`` (m).
    sparse_density, dense_density : float, default 4.0 and 16.0
        Sites per km² of the 1:50,000-like and 1:25,000-like surveys.
    dense_extent : (xmin, ymin, xmax, ymax), optional
        Where the dense survey exists (CRS units); everywhere by default.
    dem_cell_size : float, default 25.0
        DEM resolution (m), deliberately different from ``cell_size``.
    crs : str, default "EPSG:32650"
        A projected CRS in metres.
    elements : tuple of str, default the paper's ten
        Subset of ``As Sb Bi Au Ag Cu Pb Zn Sn Mo``.
    origin : (float, float), default (500000.0, 4000000.0)
        Lower-left corner of the region.

    Returns
    -------
    SyntheticRegion
        ``dem``, ``geology``, ``faults``, ``samples_sparse``, ``samples_dense``, ``truth``,
        ``bounds``, ``crs``, ``cell_size``, ``elements``, ``units``, ``detection_limits``,
        ``seed``.

    Examples
    --------
    >>> import geochem_sr as gs
    >>> region = gs.synthetic_region(seed=0, size_km=(4, 4))
    >>> region.truth.dims
    ('element', 'y', 'x')
    """
    elements = tuple(elements)
    _check_args(size_km, cell_size, (sparse_density, dense_density), dem_cell_size, elements,
                seed)
    bounds = (float(origin[0]), float(origin[1]), origin[0] + 1000.0 * size_km[0],
              origin[1] + 1000.0 * size_km[1])
    survey_grid = schema.make_grid(bounds, cell_size, crs)  # checks the CRS is projected
    crs = survey_grid.rio.crs.to_string()
    margin = 4 * dem_cell_size
    dem_bounds = (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin)
    grid, elevation, lines, mapped, parts = simulate(
        seed, bounds, dem_bounds, min(dem_cell_size, cell_size / 2), crs)
    logc = log10_concentration(parts, mapped, grid.res)

    dem_grid = schema.make_grid(dem_bounds, dem_cell_size, crs)
    dx, dy = np.meshgrid(dem_grid.x.values, dem_grid.y.values)
    dem_values = grid.sample(elevation, dx.ravel(), dy.ravel()).reshape(dx.shape)
    dem = xr.DataArray(dem_values.astype(np.float32), coords=dem_grid.coords,
                       dims=(schema.Y, schema.X), name=schema.ELEVATION, attrs={"units": "m"})
    dem = dem.rio.write_crs(crs).rio.write_transform(dem_grid.rio.transform())

    units = {e: schema.DEFAULT_UNITS[e] for e in elements}
    sx, sy = np.meshgrid(survey_grid.x.values, survey_grid.y.values)
    idx = [ELEMENTS.index(e) for e in elements]
    truth_vals = 10 ** grid.sample(logc[idx], sx.ravel(), sy.ravel())
    truth = xr.DataArray(
        truth_vals.reshape(len(elements), *sx.shape).astype(np.float32),
        coords={**survey_grid.coords, schema.ELEMENT: list(elements),
                schema.ELEMENT_UNITS: (schema.ELEMENT, [units[e] for e in elements])},
        dims=(schema.ELEMENT, schema.Y, schema.X), name="truth",
        attrs={"long_name": "noise-free element concentration"},
    )
    truth = truth.rio.write_crs(crs).rio.write_transform(survey_grid.rio.transform())

    extent = bounds if dense_extent is None else (
        max(bounds[0], dense_extent[0]), max(bounds[1], dense_extent[1]),
        min(bounds[2], dense_extent[2]), min(bounds[3], dense_extent[3]))
    if extent[2] <= extent[0] or extent[3] <= extent[1]:
        raise GridError(f"dense_extent: expected a box overlapping {bounds}, found {dense_extent}")
    rs, rd = stream_rng(seed, "sparse"), stream_rng(seed, "dense")
    sparse = _survey(rs, grid, logc, _sites(rs, bounds, sparse_density), elements, "S50K", crs)
    dense = _survey(rd, grid, logc, _sites(rd, extent, dense_density), elements, "S25K", crs)
    faults = gpd.GeoDataFrame({"name": [f"F{i + 1}" for i in range(len(lines))]},
                              geometry=lines, crs=crs)
    return SyntheticRegion(
        dem=dem, geology=polygonize(mapped, grid, bounds, crs), faults=faults,
        samples_sparse=sparse, samples_dense=dense, truth=truth, bounds=bounds, crs=crs,
        cell_size=float(cell_size), elements=elements, units=units,
        detection_limits={e: DETECTION_LIMITS[e] for e in elements}, seed=int(seed),
    )
