"""Real public survey data that installs with the package's ``notebooks`` extra.

The **Meuse** data set (Pebesma & Bivand 2005; Bivand et al. 2013; from the R package ``sp``,
GPL-3) ships inside the ``scikit-gstat`` wheel: 155 topsoil samples from the flood plain of
the river Meuse near Stein (NL), each analysed for Cd, Cu, Pb and Zn (mg/kg = ppm), with the
relative elevation, the soil type of the 1:50,000 soil map of the Netherlands (3 classes),
the flooding-frequency class, lime, land use and distance to the river. Coordinates are in
RD New (EPSG:28992), metres.

It is not a stream-sediment survey at two densities with a DEM and a geological map, so
:func:`meuse_inputs` builds the inputs :func:`geochem_sr.build_survey` needs from it, and
says how:

* **two densities** -- the *dense* survey is every sample; the *sparse* survey keeps one
  sample per ``sparse_spacing`` x ``sparse_spacing`` cell (:func:`thin_samples`), as a
  coarser campaign over the same ground would;
* **DEM** -- none ships, so an elevation surface is interpolated from the elevation
  measured at the samples (:func:`elevation_surface`, a smoothing thin-plate spline); its
  slope and aspect show the levee and flood-plain relief only at the scale of the samples;
* **geology** -- the soil class at the samples, turned into polygons by the Voronoi cells
  of the samples dissolved by class (:func:`voronoi_units`).

No network access is needed: everything is read from the installed wheel.

Examples
--------
>>> from geochem_sr.datasets import load_meuse
>>> samples = load_meuse()
>>> len(samples), samples.crs.to_epsg()
(155, 28992)
>>> samples.attrs["elements"]
['Cd', 'Cu', 'Pb', 'Zn']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, GridError, InputFileError, SchemaError

__all__ = [
    "MEUSE_CRS",
    "MEUSE_ELEMENTS",
    "MEUSE_FLOOD_CLASSES",
    "MEUSE_SOIL_UNITS",
    "RealSurveyInputs",
    "elevation_surface",
    "load_meuse",
    "meuse_inputs",
    "meuse_path",
    "thin_samples",
    "voronoi_units",
]

#: CRS of the Meuse coordinates: Amersfoort / RD New.
MEUSE_CRS = "EPSG:28992"
#: The Meuse metals, by chemical symbol, in the order of the original columns.
MEUSE_ELEMENTS: tuple[str, ...] = ("Cd", "Cu", "Pb", "Zn")
_METAL_COLUMNS = {"cadmium": "Cd", "copper": "Cu", "lead": "Pb", "zinc": "Zn"}
#: Soil types of the 1:50,000 soil map of the Netherlands (``sp::meuse`` documentation).
MEUSE_SOIL_UNITS: dict[int, str] = {
    1: "Rd10A calcareous meadow soil, light sandy clay",
    2: "Rd90C/VII non-calcareous meadow soil, heavy sandy clay to light clay",
    3: "Bkd26/VII red brick soil, fine-sandy silty light clay",
}
#: Flooding-frequency classes.
MEUSE_FLOOD_CLASSES: dict[int, str] = {
    1: "flooded once in 2 years",
    2: "flooded once in 10 years",
    3: "flooded once in 50 years",
}
_CITATION = (
    "Pebesma EJ, Bivand RS (2005). Classes and methods for spatial data in R. R News 5(2), "
    "9-13. Bivand RS, Pebesma E, Gomez-Rubio V (2013). Applied spatial data analysis with R, "
    "2nd ed. Springer. Data from the R package sp (GPL-3), as shipped by scikit-gstat."
)


# --------------------------------------------------------------------------- loading
def meuse_path() -> Path:
    """Path of the Meuse sample table shipped by the ``scikit-gstat`` wheel.

    Returns
    -------
    pathlib.Path
        ``.../skgstat/data/samples/meuse.txt``.

    Raises
    ------
    InputFileError
        If scikit-gstat is not installed (``pip install scikit-gstat``, part of the
        ``notebooks`` extra) or its copy lacks the file.
    """
    try:
        root = resources.files("skgstat")
    except ModuleNotFoundError as exc:
        raise InputFileError(
            "Meuse data: expected the scikit-gstat package (pip install scikit-gstat, or "
            "pip install 'geochem_sr[notebooks]'), found it not installed"
        ) from exc
    path = Path(str(root.joinpath("data", "samples", "meuse.txt")))
    if not path.is_file():
        raise InputFileError(f"Meuse data: expected the file '{path}', found none")
    return path


def load_meuse(path: str | Path | None = None) -> gpd.GeoDataFrame:
    """Read the 155 Meuse topsoil samples as a survey GeoDataFrame.

    Parameters
    ----------
    path : path, optional
        A copy of ``meuse.txt`` (default: the one in the scikit-gstat wheel).

    Returns
    -------
    geopandas.GeoDataFrame
        Points in EPSG:28992 with element columns ``Cd Cu Pb Zn`` (ppm) and ``elev``
        (relative elevation above the local river bed, m), ``dist`` (normalised distance to
        the river), ``dist_m`` (m), ``om`` (organic matter, %), ``ffreq`` and ``soil``
        (class codes 1-3), ``soil_unit`` and ``flood_class`` (their names), ``lime`` (0/1),
        ``landuse``. ``attrs`` holds ``elements``, ``units`` and ``citation``, so the frame
        goes straight into :func:`geochem_sr.build_survey`.

    Raises
    ------
    InputFileError
        File missing or without the expected columns.
    """
    path = Path(path) if path is not None else meuse_path()
    if not path.is_file():
        raise InputFileError(f"Meuse data: expected the file '{path}', found none")
    df = pd.read_csv(path)
    needed = ["x", "y", *_METAL_COLUMNS, "elev", "soil", "ffreq"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputFileError(
            f"Meuse data '{path}': expected columns {missing}, found {list(df.columns)}"
        )
    df = df.rename(columns={**_METAL_COLUMNS, "dist.m": "dist_m"})
    for col in ("soil", "ffreq"):
        df[col] = df[col].astype("int64")
    df["soil_unit"] = df["soil"].map(MEUSE_SOIL_UNITS).astype(object)
    df["flood_class"] = df["ffreq"].map(MEUSE_FLOOD_CLASSES).astype(object)
    for el in MEUSE_ELEMENTS:
        df[el] = df[el].astype("float64")
    gdf = gpd.GeoDataFrame(
        df.drop(columns=["x", "y"]),
        geometry=gpd.points_from_xy(df["x"].astype(float), df["y"].astype(float)),
        crs=MEUSE_CRS,
    )
    gdf.attrs = {
        "elements": list(MEUSE_ELEMENTS),
        "units": {el: "ppm" for el in MEUSE_ELEMENTS},
        "citation": _CITATION,
        "source": str(path),
    }
    return gdf


# --------------------------------------------------------------------------- building blocks
def thin_samples(
    samples: gpd.GeoDataFrame, spacing: float, seed: int = 0
) -> gpd.GeoDataFrame:
    """Keep one sample per ``spacing`` x ``spacing`` cell: a sparser survey of the same ground.

    In each cell of a square lattice the sample nearest the cell centre is kept, so the
    kept sites are spread evenly, like the sites of a survey planned at that spacing. The
    lattice origin is shifted at random by ``seed`` (same seed, same subset).

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Point samples in a projected CRS (metres).
    spacing : float
        Lattice spacing in metres.
    seed : int, default 0
        Seed of the lattice offset.

    Returns
    -------
    geopandas.GeoDataFrame
        The kept rows in their original order, ``attrs`` kept and ``thinning_spacing`` added.

    Raises
    ------
    GridError
        ``spacing`` not positive.
    """
    if not np.isfinite(spacing) or spacing <= 0:
        raise GridError(f"spacing: expected a positive number of metres, found {spacing!r}")
    rng = np.random.default_rng(seed)
    offset = rng.uniform(0.0, spacing, 2)
    xy = np.c_[samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()]
    cell = np.floor((xy - offset) / spacing)
    centre = offset + (cell + 0.5) * spacing
    dist = np.hypot(*(xy - centre).T)
    order = np.lexsort((np.arange(len(xy)), dist, cell[:, 1], cell[:, 0]))
    key = cell[order]
    first = np.r_[True, (np.diff(key, axis=0) != 0).any(axis=1)]
    keep = np.sort(order[first])
    out = samples.iloc[keep].copy()
    out.attrs = {**samples.attrs, "thinning_spacing": float(spacing)}
    return out


def elevation_surface(
    samples: gpd.GeoDataFrame,
    cell_size: float,
    bounds: tuple[float, float, float, float] | None = None,
    column: str = "elev",
    smoothing: float = 1.0,
) -> xr.DataArray:
    """A DEM-like elevation grid interpolated from elevations measured at the samples.

    A smoothing thin-plate spline (:class:`scipy.interpolate.RBFInterpolator`) through the
    sample elevations, evaluated at the cell centres of the grid. It carries the relief
    only at the scale of the sample spacing: use a real DEM wherever one exists.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Points in a projected CRS with an elevation column.
    cell_size : float
        Cell size of the output grid (m).
    bounds : (xmin, ymin, xmax, ymax), optional
        Extent (default: the samples' extent plus one cell).
    column : str, default "elev"
        Elevation column (m).
    smoothing : float, default 1.0
        Spline smoothing (0 passes through every sample exactly).

    Returns
    -------
    xarray.DataArray
        ``elevation`` (y, x), float32, metres, with the samples' CRS and transform.

    Raises
    ------
    SchemaError
        No such column.
    DataError
        Fewer than 3 samples with an elevation.
    """
    from scipy.interpolate import RBFInterpolator

    if column not in samples.columns:
        raise SchemaError(f"samples: expected an elevation column '{column}', "
                          f"found {[c for c in samples.columns if c != 'geometry']}")
    z = samples[column].to_numpy(dtype=float)
    xy = np.c_[samples.geometry.x.to_numpy(), samples.geometry.y.to_numpy()]
    ok = np.isfinite(z) & np.isfinite(xy).all(axis=1)
    if ok.sum() < 3:
        raise DataError(
            f"{column}: expected at least 3 samples with an elevation, found {ok.sum()}"
        )
    if bounds is None:
        xmin, ymin, xmax, ymax = samples.total_bounds
        bounds = (xmin - cell_size, ymin - cell_size, xmax + cell_size, ymax + cell_size)
    grid = schema.make_grid(bounds, cell_size, samples.crs)
    gx, gy = np.meshgrid(grid[schema.X].values, grid[schema.Y].values)
    spline = RBFInterpolator(xy[ok], z[ok], kernel="thin_plate_spline", smoothing=smoothing)
    values = spline(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
    # the spline extrapolates linearly away from the samples: keep it within what was measured
    values = np.clip(values, z[ok].min(), z[ok].max()).astype(np.float32)
    dem = xr.DataArray(values, coords={schema.Y: grid[schema.Y], schema.X: grid[schema.X]},
                       dims=(schema.Y, schema.X), name=schema.ELEVATION,
                       attrs={"units": "m", "long_name": f"elevation interpolated from '{column}'"})
    return dem.rio.write_crs(samples.crs).rio.write_transform(grid.rio.transform())


def voronoi_units(
    samples: gpd.GeoDataFrame,
    column: str,
    names: Mapping[object, str] | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    unit_column: str = "unit",
) -> gpd.GeoDataFrame:
    """Polygons of a class recorded at the samples: Voronoi cells dissolved by class.

    Each place gets the class of its nearest sample, the simplest map a field class
    observed at points gives when no map ships.

    Parameters
    ----------
    samples : geopandas.GeoDataFrame
        Points with a class column.
    column : str
        Class column (e.g. ``"soil"``).
    names : mapping, optional
        Class value -> unit name (default: the value as text).
    bounds : (xmin, ymin, xmax, ymax), optional
        Clip box (default: the samples' extent plus 5 %).
    unit_column : str, default "unit"
        Name of the output unit column.

    Returns
    -------
    geopandas.GeoDataFrame
        One (multi)polygon per class, column ``unit_column``, the samples' CRS.

    Raises
    ------
    SchemaError
        No such column.
    DataError
        No sample with a class.
    """
    import shapely
    from shapely.geometry import box

    if column not in samples.columns:
        raise SchemaError(f"samples: expected a class column '{column}', "
                          f"found {[c for c in samples.columns if c != 'geometry']}")
    sub = samples[samples[column].notna()]
    if len(sub) == 0:
        raise DataError(f"{column}: expected samples with a class, found none")
    if bounds is None:
        xmin, ymin, xmax, ymax = sub.total_bounds
        pad = 0.05 * max(xmax - xmin, ymax - ymin, 1.0)
        bounds = (xmin - pad, ymin - pad, xmax + pad, ymax + pad)
    clip = box(*bounds)
    points = sub.geometry.to_numpy()
    cells = shapely.voronoi_polygons(shapely.multipoints(points), extend_to=clip)
    cells = np.asarray(shapely.get_parts(cells))
    # match each Voronoi cell to the sample inside it
    owner = np.full(len(cells), -1)
    tree = shapely.STRtree(cells)
    pt_idx, cell_idx = tree.query(points, predicate="within")
    owner[cell_idx] = pt_idx
    cells, owner = cells[owner >= 0], owner[owner >= 0]
    labels = sub[column].to_numpy()[owner]
    names = dict(names or {})
    frame = gpd.GeoDataFrame(
        {unit_column: [names.get(v, str(v)) for v in labels]},
        geometry=shapely.intersection(cells, clip), crs=samples.crs,
    )
    out = frame.dissolve(by=unit_column, as_index=False)
    return out[[unit_column, "geometry"]]


# --------------------------------------------------------------------------- all inputs
@dataclass(frozen=True, eq=False)
class RealSurveyInputs:
    """Inputs of :func:`geochem_sr.build_survey` derived from a real data set.

    Attributes
    ----------
    samples_sparse, samples_dense : geopandas.GeoDataFrame
        The thinned survey and the full one.
    dem : xarray.DataArray
        Elevation (interpolated from the samples when no DEM ships).
    geology : geopandas.GeoDataFrame
        Unit polygons, column ``unit``.
    bounds : (xmin, ymin, xmax, ymax)
        Extent to pass to ``build_survey(bounds=...)`` so the grid covers the dense survey.
    crs : str
        Projected CRS.
    elements : tuple of str
        Element columns.
    units : dict
        Element -> unit.
    notes : str
        How each input was made, in words.
    """

    samples_sparse: gpd.GeoDataFrame
    samples_dense: gpd.GeoDataFrame
    dem: xr.DataArray
    geology: gpd.GeoDataFrame
    bounds: tuple[float, float, float, float]
    crs: str
    elements: tuple[str, ...]
    units: dict[str, str]
    notes: str


def meuse_inputs(
    sparse_spacing: float = 300.0,
    cell_size: float = 40.0,
    unit_column: str = "soil",
    seed: int = 0,
) -> RealSurveyInputs:
    """Sparse and dense surveys, an elevation grid and a unit map from the Meuse data.

    Parameters
    ----------
    sparse_spacing : float, default 300
        Lattice spacing (m) of the simulated sparse survey (:func:`thin_samples`).
    cell_size : float, default 40
        Cell size (m) of the elevation grid (use the same in ``build_survey``).
    unit_column : {"soil", "ffreq"}, default "soil"
        Which class map plays the part of the geology: the soil type (3 units) or the
        flooding-frequency class (3 units).
    seed : int, default 0
        Seed of the thinning.

    Returns
    -------
    RealSurveyInputs
        Ready for ``gs.build_survey(inp.samples_sparse, inp.samples_dense, dem=inp.dem,
        geology=inp.geology, bounds=inp.bounds, cell_size=cell_size)``.

    Raises
    ------
    SchemaError
        ``unit_column`` not one of the two class columns.
    """
    tables = {"soil": MEUSE_SOIL_UNITS, "ffreq": MEUSE_FLOOD_CLASSES}
    if unit_column not in tables:
        raise SchemaError(f"unit_column: expected one of {sorted(tables)}, found {unit_column!r}")
    dense = load_meuse()
    sparse = thin_samples(dense, sparse_spacing, seed=seed)
    xmin, ymin, xmax, ymax = dense.total_bounds
    pad = cell_size
    bounds = (float(xmin - pad), float(ymin - pad), float(xmax + pad), float(ymax + pad))
    dem = elevation_surface(dense, cell_size, bounds=bounds)
    # the grid snaps outward to whole cells: let the unit map reach beyond it
    outer = (bounds[0] - 2 * cell_size, bounds[1] - 2 * cell_size,
             bounds[2] + 2 * cell_size, bounds[3] + 2 * cell_size)
    geology = voronoi_units(dense, unit_column, names=tables[unit_column], bounds=outer)
    notes = (
        f"dense survey: all {len(dense)} Meuse samples; sparse survey: {len(sparse)} samples, "
        f"one per {sparse_spacing:g} m cell (thinned, seed {seed}); elevation: thin-plate "
        f"spline through the sample elevations on a {cell_size:g} m grid (no DEM ships); "
        f"geology: Voronoi cells of the samples dissolved by '{unit_column}' class."
    )
    return RealSurveyInputs(
        samples_sparse=sparse, samples_dense=dense, dem=dem, geology=geology, bounds=bounds,
        crs=MEUSE_CRS, elements=MEUSE_ELEMENTS, units={el: "ppm" for el in MEUSE_ELEMENTS},
        notes=notes,
    )
