"""Distances to faults and contacts (geochem_sr.covariates.structure) and reading fault maps."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr

from geochem_sr import io, schema
from geochem_sr.covariates.structure import DISTANCE_CAP, contact_distance, fault_distance
from geochem_sr.errors import CRSError, InputFileError


def _grid(n: int = 12, cell: float = 50.0) -> xr.Dataset:
    return schema.make_grid((500000, 4000000, 500000 + n * cell, 4000000 + n * cell), cell,
                            "EPSG:32650")


def test_fault_distance_is_metres_from_the_fault_cells():
    grid = _grid()
    x = 500000 + 5.5 * 50  # through the centres of column 5
    f = gpd.GeoDataFrame(geometry=[shapely.LineString([(x, 4000000), (x, 4000600)])],
                         crs="EPSG:32650")
    d = fault_distance(f, grid)
    assert d.dims == (schema.Y, schema.X) and d.dtype == np.float32
    np.testing.assert_allclose(d.values[4], 50.0 * np.abs(np.arange(12) - 5))
    assert d.attrs["units"] == "m" and d.rio.crs == grid.rio.crs


def test_fault_distance_reprojects_the_faults():
    grid = _grid()
    x = 500000 + 5.5 * 50
    line = gpd.GeoSeries([shapely.LineString([(x, 3999000), (x, 4001000)])], crs="EPSG:32650")
    f = gpd.GeoDataFrame(geometry=line.to_crs("EPSG:4326"))
    d = fault_distance(f, grid)
    assert (d.values[:, 5] == 0).all() and d.values[0, 0] == 250.0


def test_no_fault_on_the_grid_gives_the_cap():
    f = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])], crs="EPSG:32650")
    d = fault_distance(f, _grid())
    assert (d.values == DISTANCE_CAP).all()


def test_read_faults_refuses_empty_points_and_no_crs():
    empty = gpd.GeoDataFrame(geometry=[shapely.LineString()], crs="EPSG:32650")
    with pytest.raises(InputFileError, match="no non-empty geometry"):
        io.read_faults(empty)
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs="EPSG:32650")
    with pytest.raises(InputFileError, match="expected lines"):
        io.read_faults(pts)
    no_crs = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])])
    with pytest.raises(CRSError, match="CRS"):
        io.read_faults(no_crs)
    with pytest.raises(InputFileError, match="not found"):
        io.read_faults("no/such/faults.gpkg")
    mixed = gpd.GeoDataFrame(geometry=[shapely.LineString(), shapely.LineString([(0, 0), (1, 1)])],
                             crs="EPSG:32650")
    with pytest.warns(UserWarning, match="dropped 1 empty"):
        assert len(io.read_faults(mixed)) == 1


def _two_units(grid: xr.Dataset) -> xr.DataArray:
    lith = np.zeros((grid.sizes["y"], grid.sizes["x"]), np.int16)
    lith[:, 6:] = 1
    lith[0, :] = -1  # unmapped row
    return xr.DataArray(lith, dims=(schema.Y, schema.X),
                        coords={schema.Y: grid.y, schema.X: grid.x}).rio.write_crs(grid.rio.crs)


def test_contact_distance_both_sides_and_unmapped_nan():
    grid = _grid()
    d = contact_distance(_two_units(grid))
    row = d.values[5]
    # columns 5 and 6 are contact cells (unit differs from a neighbour)
    np.testing.assert_allclose(row, [250, 200, 150, 100, 50, 0, 0, 50, 100, 150, 200, 250])
    assert np.isnan(d.values[0]).all()


def test_contact_distance_dask_equals_numpy():
    lith = _two_units(_grid())
    lazy = contact_distance(lith.chunk({"y": 5, "x": 7}))
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, contact_distance(lith).values)


def test_contact_distance_dask_multichunk_path_equals_numpy():
    grid = _grid(n=40)
    lith = np.zeros((40, 40), np.int16)
    lith[:, 25:] = 1
    da = xr.DataArray(lith, dims=(schema.Y, schema.X),
                      coords={schema.Y: grid.y, schema.X: grid.x}).rio.write_crs(grid.rio.crs)
    eager = contact_distance(da, cap=300.0)
    lazy = contact_distance(da.chunk({"y": 10, "x": 10}), cap=300.0)
    np.testing.assert_array_equal(lazy.values, eager.values)
    assert eager.values.max() == 300.0 and eager.values.min() == 0.0


def test_contact_distance_refuses_a_geographic_grid_and_fault_zones_are_filled():
    lith = _two_units(_grid())
    with pytest.raises(CRSError, match="geographic"):
        contact_distance(lith.rio.write_crs("EPSG:4326"))
    grid = _grid()
    zone = shapely.box(500000 + 200, 4000000, 500000 + 400, 4000600)
    d = fault_distance(gpd.GeoDataFrame(geometry=[zone], crs="EPSG:32650"), grid)
    assert (d.values[:, 5:7] == 0).all()
