"""The Meuse loader (data shipped by the scikit-gstat wheel) and its building blocks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from geochem_sr import schema
from geochem_sr.data import (
    MEUSE_ELEMENTS,
    MEUSE_SOIL_UNITS,
    elevation_surface,
    load_meuse,
    meuse_inputs,
    thin_samples,
    voronoi_units,
)
from geochem_sr.errors import GridError, InputFileError, ParameterError, SchemaError


@pytest.fixture(scope="module")
def meuse() -> gpd.GeoDataFrame:
    return load_meuse()


def test_load_meuse_reads_the_155_samples_with_crs_and_units(meuse):
    assert len(meuse) == 155
    assert meuse.crs.to_epsg() == 28992
    assert meuse.attrs["elements"] == list(MEUSE_ELEMENTS)
    assert meuse.attrs["units"] == {"Cd": "ppm", "Cu": "ppm", "Pb": "ppm", "Zn": "ppm"}
    first = meuse.iloc[0]
    assert (first.geometry.x, first.geometry.y) == (181072.0, 333611.0)
    assert (first["Cd"], first["Cu"], first["Pb"], first["Zn"]) == (11.7, 85.0, 299.0, 1022.0)
    assert (meuse[list(MEUSE_ELEMENTS)] > 0).all().all()
    assert set(meuse["soil"]) == {1, 2, 3}
    assert meuse["soil_unit"].iloc[0] == MEUSE_SOIL_UNITS[1]


def test_load_meuse_missing_file_names_it(tmp_path):
    with pytest.raises(InputFileError, match="nope.txt"):
        load_meuse(tmp_path / "nope.txt")


def test_thin_samples_keeps_one_site_per_cell_and_is_seeded(meuse):
    sparse = thin_samples(meuse, 400.0, seed=3)
    assert 0 < len(sparse) < len(meuse)
    assert sparse.index.isin(meuse.index).all()
    assert sparse.attrs["elements"] == meuse.attrs["elements"]
    assert sparse.index.equals(thin_samples(meuse, 400.0, seed=3).index)
    assert len(thin_samples(meuse, 800.0, seed=3)) < len(sparse)
    # no two kept sites in one lattice cell
    offset = np.random.default_rng(3).uniform(0.0, 400.0, 2)
    xy = np.c_[sparse.geometry.x, sparse.geometry.y]
    cells = {tuple(c) for c in np.floor((xy - offset) / 400.0).astype(int)}
    assert len(cells) == len(sparse)


def test_thin_samples_rejects_bad_spacing(meuse):
    with pytest.raises(GridError, match="spacing"):
        thin_samples(meuse, 0.0)


def test_elevation_surface_is_a_grid_within_the_measured_range(meuse):
    dem = elevation_surface(meuse, 100.0, smoothing=0.0)
    assert dem.dims == (schema.Y, schema.X)
    assert dem.rio.crs.to_epsg() == 28992
    assert dem.dtype == np.float32
    assert float(dem.min()) >= meuse["elev"].min() - 1e-4
    assert float(dem.max()) <= meuse["elev"].max() + 1e-4
    # an exact spline passes near the sample in the cell holding it (100 m cells, flat plain)
    p = meuse.iloc[10]
    near = float(dem.sel(x=p.geometry.x, y=p.geometry.y, method="nearest"))
    assert abs(near - p["elev"]) < 1.0
    with pytest.raises(SchemaError, match="nope"):
        elevation_surface(meuse, 100.0, column="nope")


def test_voronoi_units_tile_the_box_and_hold_their_samples(meuse):
    bounds = (178500.0, 329600.0, 181500.0, 333700.0)
    units = voronoi_units(meuse, "soil", names=MEUSE_SOIL_UNITS, bounds=bounds)
    assert sorted(units["unit"]) == sorted(MEUSE_SOIL_UNITS.values())
    assert units.crs == meuse.crs
    assert units.area.sum() == pytest.approx(box(*bounds).area, rel=1e-9)
    joined = gpd.sjoin(meuse, units, predicate="within")
    assert len(joined) == len(meuse)
    assert (joined["unit"] == joined["soil"].map(MEUSE_SOIL_UNITS)).all()


def test_meuse_inputs_build_a_survey():
    import geochem_sr as gs

    inp = meuse_inputs(sparse_spacing=400.0, cell_size=80.0)
    assert len(inp.samples_sparse) < len(inp.samples_dense) == 155
    ds = gs.build_survey(inp.samples_sparse, inp.samples_dense, geology=inp.geology,
                         bounds=inp.bounds, cell_size=80.0, method="idw")
    assert list(ds[schema.ELEMENT].values) == list(MEUSE_ELEMENTS)
    assert ds.rio.crs.to_epsg() == 28992
    assert set(np.unique(ds[schema.LITHOLOGY].values)) - {-1} == {0, 1, 2}
    lr_ok, hr_ok = np.isfinite(ds[schema.LR].values), np.isfinite(ds[schema.HR].values)
    assert hr_ok.any() and (lr_ok & hr_ok).sum() > 0.5 * hr_ok.sum()
    with pytest.raises(ParameterError, match="unit_column"):
        meuse_inputs(unit_column="landuse")
