"""The Meuse data set: real public survey data that installs with the ``notebooks`` extra.

155 topsoil samples from the flood plain of the river Meuse (Cd, Cu, Pb, Zn), shipped inside
the ``scikit-gstat`` wheel (no network access needed): :func:`load_meuse` reads them,
:func:`meuse_inputs` builds the inputs of :func:`geochem_sr.build_survey` from them.

Examples
--------
>>> from geochem_sr.data import load_meuse
>>> samples = load_meuse()
>>> len(samples), samples.crs.to_epsg()
(155, 28992)
>>> samples.attrs["elements"]
['Cd', 'Cu', 'Pb', 'Zn']
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geochem_sr.data.derived import (
    RealSurveyInputs,
    elevation_surface,
    thin_samples,
    voronoi_units,
)
from geochem_sr.errors import InputFileError, ParameterError

__all__ = [
    "MEUSE_CRS",
    "MEUSE_ELEMENTS",
    "MEUSE_FLOOD_CLASSES",
    "MEUSE_SOIL_UNITS",
    "load_meuse",
    "meuse_inputs",
    "meuse_path",
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
    ParameterError
        ``unit_column`` not one of the two class columns.

    Notes
    -----
    Meuse is not a stream-sediment survey at two densities with a DEM and a geological map:
    the dense survey is every sample, the sparse one keeps one sample per
    ``sparse_spacing`` cell (:func:`~geochem_sr.data.thin_samples`); the elevation is a
    smoothing spline through the sample elevations
    (:func:`~geochem_sr.data.elevation_surface`); the "geology" is the class at the samples
    as Voronoi cells dissolved by class (:func:`~geochem_sr.data.voronoi_units`).
    """
    tables = {"soil": MEUSE_SOIL_UNITS, "ffreq": MEUSE_FLOOD_CLASSES}
    if unit_column not in tables:
        raise ParameterError(
            f"unit_column: expected one of {sorted(tables)}, found {unit_column!r}")
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
