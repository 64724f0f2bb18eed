"""Tests of geochem_sr.covariates.terrain: DEM onto the grid, slope and aspect (xarray-spatial)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from pyproj import Transformer

from geochem_sr import schema
from geochem_sr.covariates.terrain import ASPECT_CONVENTION, add_terrain, terrain_from_dem
from geochem_sr.errors import CRSError, GridError, SchemaError

CRS = "EPSG:32650"
X0, Y0 = 500000.0, 4000000.0


def make_grid(nx: int = 40, ny: int = 30, cell: float = 50.0) -> xr.Dataset:
    return schema.make_grid((X0, Y0, X0 + nx * cell, Y0 + ny * cell), cell, CRS)


def with_elevation(grid: xr.Dataset, fn) -> xr.Dataset:
    xx, yy = np.meshgrid(grid.x.values, grid.y.values)
    return grid.assign(elevation=(("y", "x"), fn(xx - X0, yy - Y0).astype(np.float32)))


def plane(a: float, b: float):
    """z = 1000 + a * east + b * north (metres)."""
    return lambda e, n: 1000.0 + a * e + b * n


def rough(e, n):
    return 1500.0 + 80 * np.sin(e / 300.0) * np.cos(n / 250.0) + 0.02 * e + 5e-6 * n * n


def dem_on(bounds, cell, crs, fn_utm) -> xr.DataArray:
    """A DEM on its own grid in ``crs``, sampling fn(east, north) given in UTM 50N."""
    xmin, ymin, xmax, ymax = bounds
    x = np.arange(xmin + cell / 2, xmax, cell)
    y = np.arange(ymax - cell / 2, ymin, -cell)
    xx, yy = np.meshgrid(x, y)
    if crs != CRS:
        xx, yy = Transformer.from_crs(crs, CRS, always_xy=True).transform(xx, yy)
    vals = fn_utm(xx - X0, yy - Y0).astype(np.float32)
    return xr.DataArray(vals, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs(crs)


def angle_diff(a, b):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


# --- slope and aspect ---------------------------------------------------------------------
def test_slope_of_a_tilted_plane_is_exact_everywhere_including_the_border():
    ds = add_terrain(with_elevation(make_grid(), plane(0.3, 0.4)))
    expected = np.degrees(np.arctan(0.5))
    assert ds.slope.dtype == np.float32 and ds.aspect.dtype == np.float32
    assert not np.isnan(ds.slope.values).any()  # border filled, not NaN
    np.testing.assert_allclose(ds.slope.values, expected, atol=1e-4)
    # downslope towards south-west: 180 + atan(0.3 / 0.4)
    np.testing.assert_allclose(ds.aspect.values, 180 + np.degrees(np.arctan(0.75)), atol=1e-3)


@pytest.mark.parametrize(
    ("facing", "a", "b", "expected"),
    [("N", 0.0, -0.2, 0.0), ("E", -0.2, 0.0, 90.0), ("S", 0.0, 0.2, 180.0),
     ("W", 0.2, 0.0, 270.0)],
)
def test_aspect_of_planes_facing_the_four_directions(facing, a, b, expected):
    ds = add_terrain(with_elevation(make_grid(), plane(a, b)))
    assert angle_diff(ds.aspect.values, expected).max() < 1e-3, facing
    np.testing.assert_allclose(ds.slope.values, np.degrees(np.arctan(0.2)), atol=1e-4)


def test_ascending_and_descending_y_give_the_same_geographic_aspect():
    down = add_terrain(with_elevation(make_grid(), rough))
    up_in = with_elevation(make_grid(), rough).isel(y=slice(None, None, -1))
    assert up_in.y.values[0] < up_in.y.values[-1]
    up = add_terrain(up_in)
    np.testing.assert_array_equal(up.aspect.values[::-1], down.aspect.values)
    np.testing.assert_array_equal(up.slope.values[::-1], down.slope.values)
    east = add_terrain(with_elevation(make_grid(), plane(-0.1, 0.0)).isel(y=slice(None, None, -1)))
    assert angle_diff(east.aspect.values, 90.0).max() < 1e-3


def test_flat_cells_get_nan_aspect_and_zero_slope():
    ds = add_terrain(with_elevation(make_grid(), lambda e, n: 0 * e + 321.0))
    assert np.isnan(ds.aspect.values).all()
    np.testing.assert_array_equal(ds.slope.values, 0.0)


def test_dask_equals_numpy_including_chunk_borders():
    ds = with_elevation(make_grid(45, 37), rough)
    eager = add_terrain(ds)
    lazy = add_terrain(ds.chunk({"y": 8, "x": 11}))
    assert isinstance(lazy.slope.data, da.Array) and isinstance(lazy.aspect.data, da.Array)
    assert lazy.slope.data.chunks == ds.chunk({"y": 8, "x": 11}).elevation.data.chunks
    assert lazy.slope.dtype == np.float32
    np.testing.assert_array_equal(lazy.slope.values, eager.slope.values)
    np.testing.assert_array_equal(lazy.aspect.values, eager.aspect.values)
    assert not np.isnan(eager.slope.values).any()


def test_attrs_coords_and_crs_are_kept():
    ds = with_elevation(make_grid(), rough)
    ds.attrs["title"] = "survey"
    out = add_terrain(ds)
    assert out.attrs["title"] == "survey"
    assert out.rio.crs == ds.rio.crs
    assert out.slope.attrs["units"] == "degrees"
    assert out.aspect.attrs["units"] == "degrees"
    assert out.aspect.attrs["convention"] == ASPECT_CONVENTION
    np.testing.assert_array_equal(out.x.values, ds.x.values)
    np.testing.assert_array_equal(out.elevation.values, ds.elevation.values)


def test_add_terrain_rejects_bad_input():
    with pytest.raises(SchemaError, match="elevation"):
        add_terrain(make_grid())
    geo = with_elevation(make_grid(), rough).rio.write_crs("EPSG:4326")
    with pytest.raises(CRSError, match="reproject"):
        add_terrain(geo)


# --- DEM onto the grid ------------------------------------------------------------------------
def test_dem_at_another_resolution_is_resampled_bilinearly():
    grid = make_grid()
    fn = plane(0.1, 0.05)
    dem = dem_on((X0 - 1000, Y0 - 1000, X0 + 3000, Y0 + 2500), 20.0, CRS, fn)
    ds = terrain_from_dem(dem, grid)
    xx, yy = np.meshgrid(grid.x.values - X0, grid.y.values - Y0)
    np.testing.assert_allclose(ds.elevation.values, fn(xx, yy), atol=0.1)
    assert ds.elevation.dtype == np.float32
    np.testing.assert_allclose(ds.slope.values, np.degrees(np.arctan(np.hypot(0.1, 0.05))),
                               atol=0.1)
    assert ds.rio.crs == grid.rio.crs
    np.testing.assert_array_equal(ds.y.values, grid.y.values)


def test_terrain_from_dem_checks_the_grid_once(monkeypatch):
    calls = []
    check_grid = schema.check_grid
    monkeypatch.setattr(schema, "check_grid",
                        lambda obj, name="dataset": calls.append(name) or check_grid(obj, name))
    grid = make_grid()
    calls.clear()
    dem = dem_on((X0 - 500, Y0 - 500, X0 + 2500, Y0 + 2000), 20.0, CRS, rough)
    terrain_from_dem(dem, grid)
    assert calls.count("grid") == 1  # (add_terrain then checks the grid of its own result)


@pytest.mark.parametrize("dem_crs", ["EPSG:32649", "EPSG:4326"])
def test_dem_in_another_crs_is_reprojected_correctly(dem_crs):
    grid = make_grid()
    fn = plane(0.08, -0.06)
    to_dem = Transformer.from_crs(CRS, dem_crs, always_xy=True)
    xs, ys = to_dem.transform([X0 - 800, X0 + 2800, X0 - 800, X0 + 2800],
                              [Y0 - 800, Y0 - 800, Y0 + 2300, Y0 + 2300])
    cell = 25.0 if dem_crs == "EPSG:32649" else 0.0002
    dem = dem_on((min(xs), min(ys), max(xs), max(ys)), cell, dem_crs, fn)
    ds = terrain_from_dem(dem, grid)
    xx, yy = np.meshgrid(grid.x.values - X0, grid.y.values - Y0)
    np.testing.assert_allclose(ds.elevation.values, fn(xx, yy), atol=0.5)
    expected = np.degrees(np.arctan2(-0.08, 0.06)) % 360  # downslope to the north-west
    signed = (ds.aspect.values - expected + 180.0) % 360.0 - 180.0
    assert abs(signed.mean()) < 0.1  # no rotation or flip, only resampling noise
    assert np.median(np.abs(signed)) < 0.5 and np.abs(signed).max() < 3.0


def test_dem_nodata_holes_stay_nan_and_are_reported():
    grid = make_grid()
    dem = dem_on((X0 - 500, Y0 - 500, X0 + 2500, Y0 + 2000), 20.0, CRS, rough)
    vals = dem.values.copy()
    vals[40:50, 60:70] = -9999.0  # a 200 m square hole inside the grid
    dem = dem.copy(data=vals).rio.write_nodata(-9999.0)
    with pytest.warns(UserWarning, match=r"(\d+) grid cells fall in nodata holes") as rec:
        ds = terrain_from_dem(dem, grid)
    n_holes = int(np.isnan(ds.elevation.values).sum())
    assert n_holes >= 9
    assert any(f"{n_holes} grid cells fall in nodata holes" in str(w.message) for w in rec)
    assert np.nanmin(ds.elevation.values) > 1000  # -9999 never leaks in
    assert np.isnan(ds.slope.values).sum() >= n_holes


def test_dem_that_does_not_cover_the_grid_raises():
    grid = make_grid()
    dem = dem_on((X0 - 500, Y0 - 500, X0 + 1000, Y0 + 2000), 20.0, CRS, rough)
    with pytest.raises(GridError, match=r"covers 50\.0% of the grid"):
        terrain_from_dem(dem, grid)


def test_geographic_grid_is_rejected_with_advice_to_reproject():
    grid = make_grid().rio.write_crs("EPSG:4326")
    dem = dem_on((X0 - 500, Y0 - 500, X0 + 2500, Y0 + 2000), 20.0, CRS, rough)
    with pytest.raises(CRSError, match="reproject"):
        terrain_from_dem(dem, grid)
    with pytest.raises(CRSError, match="DEM"):
        terrain_from_dem(dem.drop_vars("spatial_ref"), make_grid())


def test_terrain_from_dem_on_an_ascending_grid_and_a_chunked_grid():
    grid = make_grid()
    dem = dem_on((X0 - 500, Y0 - 500, X0 + 2500, Y0 + 2000), 20.0, CRS, rough)
    down = terrain_from_dem(dem, grid)
    up = terrain_from_dem(dem, grid.isel(y=slice(None, None, -1)))
    np.testing.assert_array_equal(up.elevation.values[::-1], down.elevation.values)
    np.testing.assert_array_equal(up.aspect.values[::-1], down.aspect.values)
    chunked = grid.assign(mask=(("y", "x"), np.ones((30, 40)))).chunk({"y": 16, "x": 16})
    lazy = terrain_from_dem(dem, chunked)
    assert isinstance(lazy.slope.data, da.Array)
    np.testing.assert_array_equal(lazy.slope.values, down.slope.values)


def test_add_terrain_leaves_lr_view_to_the_caller_and_the_accessor_refreshes_it():
    from geochem_sr.features import add_lr_view

    ds = with_elevation(make_grid(), rough)
    sites = np.zeros((ds.sizes["y"], ds.sizes["x"]), np.int16)
    sites[1::4, 2::4] = 1
    ds = add_terrain(ds.assign({schema.LR_SITES: (("y", "x"), sites)}))
    ds = add_lr_view(ds, [schema.ELEVATION, schema.SLOPE])
    raised = ds.assign(elevation=ds.elevation + 100)
    stale = add_terrain(raised)  # covariates never reach up to features
    xr.testing.assert_identical(stale[schema.LR_VIEW], ds[schema.LR_VIEW])
    fresh = raised.geosr.add_terrain()
    xr.testing.assert_identical(fresh[schema.SLOPE], stale[schema.SLOPE])
    view, before = fresh[schema.LR_VIEW], ds[schema.LR_VIEW]
    np.testing.assert_allclose(view.sel(covariate="elevation"),
                               before.sel(covariate="elevation") + 100, rtol=1e-5)
    np.testing.assert_allclose(view.sel(covariate="slope"), before.sel(covariate="slope"),
                               rtol=1e-5)
    from geochem_sr.features import add_terrain as add_terrain_and_view

    xr.testing.assert_identical(add_terrain_and_view(raised), fresh)  # = gs.add_terrain
