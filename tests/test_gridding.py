"""Tests of geochem_sr.gridding: IDW and local ordinary kriging onto the survey grid."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

import geochem_sr
import geochem_sr.gridding as gridding
from geochem_sr import schema
from geochem_sr.errors import DataError, GeoSRError
from geochem_sr.gridding import (
    CONCENTRATION,
    COVERAGE,
    LOG10_VARIANCE,
    fit_variogram,
    grid_samples,
    krige_points,
)

CRS = "EPSG:32650"
X0, Y0 = 500000.0, 4000000.0
VG = {"model": "spherical", "range": 2500.0, "sill": 0.3, "nugget": 0.0}


def make_grid(nx: int = 40, ny: int = 30, cell: float = 100.0):
    return schema.make_grid((X0, Y0, X0 + nx * cell, Y0 + ny * cell), cell, CRS)


def field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth log10 field: values from about 1 to 100 ppm."""
    return 1.0 + 0.6 * np.sin((x - X0) / 700.0) + 0.4 * np.cos((y - Y0) / 900.0)


def make_samples(n: int = 200, seed: int = 0, extent: tuple[float, float] = (4000.0, 3000.0),
                 crs: str = CRS, **extra: np.ndarray) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x = X0 + rng.uniform(0, extent[0], n)
    y = Y0 + rng.uniform(0, extent[1], n)
    cols = {"As": 10 ** (field(x, y) + rng.normal(0, 0.05, n)),
            "Cu": 10 ** (2.0 - 0.5 * field(x, y) + rng.normal(0, 0.05, n))}
    cols.update(extra)
    return gpd.GeoDataFrame(cols, geometry=gpd.points_from_xy(x, y), crs=crs)


def xy_of(gdf: gpd.GeoDataFrame) -> np.ndarray:
    return np.column_stack([gdf.geometry.x, gdf.geometry.y])


def cell_centres(grid) -> np.ndarray:
    xx, yy = np.meshgrid(grid.x.values, grid.y.values)
    return np.column_stack([xx.ravel(), yy.ravel()])


# --- correctness ----------------------------------------------------------------------------
@pytest.mark.parametrize("nugget", [0.0, 0.05])
def test_kriging_reproduces_samples_at_their_locations(nugget):
    grid = make_grid()
    rng = np.random.default_rng(1)
    cells = rng.choice(grid.sizes["x"] * grid.sizes["y"], 120, replace=False)
    iy, ix = np.divmod(cells, grid.sizes["x"])
    x, y = grid.x.values[ix], grid.y.values[iy]
    values = 10 ** (field(x, y) + rng.normal(0, 0.1, len(x)))
    gdf = gpd.GeoDataFrame({"As": values}, geometry=gpd.points_from_xy(x, y), crs=CRS)
    out = grid_samples(gdf, grid, ["As"], variogram={**VG, "nugget": nugget},
                       return_variance=True)
    got = out[CONCENTRATION].sel(element="As").values[iy, ix]
    np.testing.assert_allclose(got, values, rtol=2e-6)
    var = out[LOG10_VARIANCE].sel(element="As").values
    np.testing.assert_allclose(var[iy, ix], 0.0, atol=1e-9)
    assert np.nanmax(var) > 1e-3  # the variance grows away from the samples


def test_idw_stays_within_the_sample_range():
    gdf = make_samples(150, seed=2)
    out = grid_samples(gdf, make_grid(), ["As", "Cu"], method="idw", k=8, power=2.0)
    for el in ("As", "Cu"):
        got = out[CONCENTRATION].sel(element=el).values
        finite = got[np.isfinite(got)]
        assert finite.size > 0.8 * got.size
        assert finite.min() >= gdf[el].min() * (1 - 1e-6)
        assert finite.max() <= gdf[el].max() * (1 + 1e-6)
    assert out.attrs["gridding_method"] == "idw"


@pytest.mark.parametrize(
    "vg",
    [
        {"model": "spherical", "range": 1800.0, "sill": 0.25, "nugget": 0.02},
        {"model": "exponential", "range": 3000.0, "sill": 0.3, "nugget": 0.0},
        {"model": "gaussian", "range": 2000.0, "sill": 0.3, "nugget": 0.03},
    ],
    ids=lambda v: v["model"],
)
def test_kriging_agrees_with_pykrige(vg):
    from pykrige.ok import OrdinaryKriging

    gdf = make_samples(120, seed=3)
    xy, z = xy_of(gdf), np.log10(gdf["As"].to_numpy())
    grid = make_grid(24, 18, 150.0)
    q = cell_centres(grid)
    ok = OrdinaryKriging(xy[:, 0], xy[:, 1], z, variogram_model=vg["model"],
                         variogram_parameters={k: vg[k] for k in ("sill", "range", "nugget")})
    ref, ref_var = ok.execute("points", q[:, 0], q[:, 1], backend="loop", n_closest_points=10)
    est, var = krige_points(xy, z, q, vg, k=10, return_variance=True)
    np.testing.assert_allclose(est, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(var, ref_var, atol=1e-6, rtol=0)
    out = grid_samples(gdf, grid, ["As"], k=10, variogram=vg, max_distance=1e9,
                       return_variance=True)
    got = np.log10(out[CONCENTRATION].sel(element="As").values.astype(np.float64)).ravel()
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    got_var = out[LOG10_VARIANCE].sel(element="As").values.ravel()
    np.testing.assert_allclose(got_var, ref_var, atol=1e-6, rtol=1e-5)


def test_grid_path_equals_point_path_with_clustered_samples():
    """The tiled neighbour search (and its per-cell fallback for crowded tiles) picks the
    same k nearest as a plain tree query."""
    rng = np.random.default_rng(4)
    x = np.concatenate([X0 + rng.uniform(0, 4000, 150), X0 + 2000 + rng.normal(0, 15, 400)])
    y = np.concatenate([Y0 + rng.uniform(0, 3000, 150), Y0 + 1500 + rng.normal(0, 15, 400)])
    gdf = gpd.GeoDataFrame({"As": 10 ** field(x, y)}, geometry=gpd.points_from_xy(x, y), crs=CRS)
    grid = make_grid()
    out = grid_samples(gdf, grid, ["As"], variogram=VG, max_distance=1e9)
    est, _ = krige_points(np.column_stack([x, y]), field(x, y), cell_centres(grid), VG)
    got = np.log10(out[CONCENTRATION].values[0].astype(np.float64)).ravel()
    np.testing.assert_allclose(got, est, atol=1e-6, rtol=0)


def test_search_radius_equals_kriging_with_the_samples_inside_it():
    gdf = make_samples(300, seed=5)
    xy, z = xy_of(gdf), np.log10(gdf["As"].to_numpy())
    q = np.array([[X0 + 2000.0, Y0 + 1500.0], [X0 + 1111.0, Y0 + 555.0]])
    radius = 250.0
    est, var = krige_points(xy, z, q, VG, k=16, search_radius=radius, return_variance=True)
    for i, point in enumerate(q):
        near = np.hypot(*(xy - point).T) <= radius
        assert 2 <= near.sum() < 16  # the radius, not k, limits this neighbourhood
        e1, v1 = krige_points(xy[near], z[near], point[None], VG, k=int(near.sum()),
                              return_variance=True)
        np.testing.assert_allclose([est[i], var[i]], [e1[0], v1[0]], rtol=1e-10)


def test_ascending_and_descending_y_give_the_same_map():
    gdf = make_samples(150, seed=6)
    grid = make_grid()
    down = grid_samples(gdf, grid, ["As"], variogram=VG)
    up = grid_samples(gdf, grid.isel(y=slice(None, None, -1)), ["As"], variogram=VG)
    assert up.y.values[0] < up.y.values[-1]
    np.testing.assert_array_equal(up[CONCENTRATION].values[:, ::-1], down[CONCENTRATION].values)
    np.testing.assert_array_equal(up[COVERAGE].values[::-1], down[COVERAGE].values)


def test_output_convention():
    gdf = make_samples(150, seed=7)
    gdf.attrs["units"] = {"As": "ppm", "Cu": "ppb"}
    grid = make_grid()
    out = grid_samples(gdf, grid, ["As", "Cu"], return_variance=True)
    assert out[CONCENTRATION].dims == ("element", "y", "x")
    assert out[CONCENTRATION].dtype == np.float32
    assert out[LOG10_VARIANCE].dtype == np.float32
    assert out[COVERAGE].dtype == bool and out[COVERAGE].dims == ("y", "x")
    assert list(out.element.values) == ["As", "Cu"]
    assert list(out[schema.ELEMENT_UNITS].values) == ["ppm", "ppb"]
    assert out.rio.crs == grid.rio.crs
    np.testing.assert_array_equal(out.x.values, grid.x.values)
    np.testing.assert_array_equal(out.y.values, grid.y.values)
    vgs = json.loads(out.attrs["variograms"])
    assert set(vgs) == {"As", "Cu"}
    assert all(v["source"] == "fitted" and v["sill"] > 0 for v in vgs.values())
    assert out.attrs["gridding_method"] == "kriging"


def test_variogram_override_per_element_and_for_all():
    gdf = make_samples(120, seed=8)
    grid = make_grid(20, 15, 200.0)
    given_as = {"model": "exponential", "range": 2000.0, "sill": 0.4, "nugget": 0.01}
    out = grid_samples(gdf, grid, ["As", "Cu"], variogram={"As": given_as})
    vgs = json.loads(out.attrs["variograms"])
    assert vgs["As"] == {**given_as, "source": "given"}
    assert vgs["Cu"]["source"] == "fitted"
    both = json.loads(grid_samples(gdf, grid, ["As", "Cu"], variogram=given_as)
                      .attrs["variograms"])
    assert both["Cu"] == {**given_as, "source": "given"}
    with pytest.raises(DataError, match="model"):
        grid_samples(gdf, grid, ["As"], variogram={"model": "cubic", "range": 1, "sill": 1})


def test_fit_variogram_recovers_a_known_variogram():
    rng = np.random.default_rng(9)
    xy = rng.uniform(0, 10000, (800, 2))
    true = {"model": "exponential", "range": 3000.0, "sill": 1.0, "nugget": 0.1}
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    cov = (true["sill"] - true["nugget"]) * np.exp(-3.0 * d / true["range"])
    z = np.linalg.cholesky(cov + 1e-9 * np.eye(len(xy))) @ rng.normal(size=len(xy))
    z += rng.normal(0, np.sqrt(true["nugget"]), len(xy))
    vg = fit_variogram(xy, z, seed=0)
    assert vg == fit_variogram(xy, z, seed=0)  # same seed, same numbers
    assert 0.5 < vg["sill"] < 1.6
    assert 0.0 <= vg["nugget"] < 0.35
    assert 1000.0 < vg["range"] < 9000.0


# --- coverage and laziness ----------------------------------------------------------------
def test_coverage_masks_cells_far_from_samples():
    gdf = make_samples(120, seed=10, extent=(1500.0, 3000.0))  # only the western part
    grid = make_grid()
    out = grid_samples(gdf, grid, ["As"], max_distance=400.0)
    d_nearest, _ = cKDTree(xy_of(gdf)).query(cell_centres(grid))
    expected = (d_nearest <= 400.0).reshape(grid.sizes["y"], grid.sizes["x"])
    np.testing.assert_array_equal(out[COVERAGE].values, expected)
    conc = out[CONCENTRATION].values[0]
    assert np.isnan(conc[~expected]).all() and np.isfinite(conc[expected]).all()
    assert out.attrs["max_distance"] == 400.0
    default = grid_samples(gdf, grid, ["As"])  # default: from the sample spacing
    assert not default[COVERAGE].values[:, -5:].any()  # the far east is never filled


@pytest.mark.parametrize("method", ["kriging", "idw"])
def test_numpy_and_dask_paths_are_equal(method):
    gdf = make_samples(200, seed=11)
    grid = make_grid()
    kw = {"return_variance": method == "kriging", "search_radius": 600.0}
    eager = grid_samples(gdf, grid, ["As", "Cu"], method=method, **kw)
    lazy = grid_samples(gdf, grid, ["As", "Cu"], method=method, chunks={"y": 7, "x": 11}, **kw)
    assert isinstance(lazy[CONCENTRATION].data, da.Array)
    assert lazy[CONCENTRATION].data.chunks[1][0] == 7
    for var in eager.data_vars:
        np.testing.assert_array_equal(lazy[var].values, eager[var].values)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cy=st.integers(3, 40), cx=st.integers(3, 50))
def test_any_chunking_gives_the_same_map(cy, cx):
    gdf = make_samples(80, seed=12)
    grid = make_grid(30, 20, 130.0)
    eager = grid_samples(gdf, grid, ["As"], variogram=VG, return_variance=True)
    lazy = grid_samples(gdf, grid, ["As"], variogram=VG, return_variance=True,
                        chunks={"y": cy, "x": cx})
    np.testing.assert_array_equal(lazy[CONCENTRATION].values, eager[CONCENTRATION].values)
    np.testing.assert_array_equal(lazy[LOG10_VARIANCE].values, eager[LOG10_VARIANCE].values)


def test_an_8192_grid_is_lazy_and_computed_chunk_by_chunk():
    big = schema.make_grid((X0, Y0, X0 + 8192 * 10.0, Y0 + 8192 * 10.0), 10.0, CRS)
    rng = np.random.default_rng(13)
    x, y = X0 + rng.uniform(0, 81920, 3000), Y0 + 81920 - rng.uniform(0, 8000, 3000)
    gdf = gpd.GeoDataFrame({"As": 10 ** field(x, y)}, geometry=gpd.points_from_xy(x, y),
                           crs=CRS)
    out = grid_samples(gdf, big, ["As"], variogram=VG, chunks=512)
    conc = out[CONCENTRATION].data
    assert isinstance(conc, da.Array) and conc.shape == (1, 8192, 8192)
    assert conc.numblocks == (1, 16, 16)
    window = out[CONCENTRATION][:, :256, 1000:1300].values  # touches 2 chunks only
    small = grid_samples(gdf, big.isel(y=slice(0, 256), x=slice(1000, 1300)), ["As"],
                         variogram=VG, max_distance=out.attrs["max_distance"])
    np.testing.assert_array_equal(window, small[CONCENTRATION].values)
    assert np.isfinite(window).mean() > 0.5


# --- bad input ---------------------------------------------------------------------------
def test_samples_all_outside_the_grid_raise():
    gdf = make_samples(50, seed=14)
    far = gdf.set_geometry(gdf.geometry.translate(1e6, 0))
    with pytest.raises(DataError, match="inside the grid"):
        grid_samples(far, make_grid(), ["As"])


def test_an_element_with_every_value_censored_raises():
    gdf = make_samples(50, seed=15, Au=np.full(50, np.nan))
    with pytest.raises(DataError, match="'Au'.*every value is NaN"):
        grid_samples(gdf, make_grid(), ["As", "Au"])


def test_non_numeric_or_non_positive_columns_raise():
    gdf = make_samples(50, seed=16, Ag=np.array(["<0.5"] * 50, dtype=object))
    with pytest.raises(DataError, match="'Ag'.*expected numbers"):
        grid_samples(gdf, make_grid(), ["Ag"])
    gdf["Sb"] = -1.0
    with pytest.raises(DataError, match="'Sb'.*positive"):
        grid_samples(gdf, make_grid(), ["Sb"])


def test_fewer_samples_than_k_use_all_with_a_warning_and_fewer_than_3_raise():
    gdf = make_samples(6, seed=17)
    with pytest.warns(UserWarning, match="fewer than k=16"):
        out = grid_samples(gdf, make_grid(), ["As"], k=16, max_distance=1e9, variogram=VG)
    assert np.isfinite(out[CONCENTRATION].values).all()
    assert out.attrs["k"] == 6
    with pytest.raises(DataError, match="at least 3"):
        grid_samples(gdf.iloc[:2], make_grid(), ["As"])


def test_elements_with_different_missing_values_are_gridded_from_their_own_samples():
    gdf = make_samples(150, seed=18)
    gdf.loc[gdf.index[:60], "Cu"] = np.nan  # censored values dropped by io
    out = grid_samples(gdf, make_grid(), ["As", "Cu"], variogram=VG, max_distance=1e9)
    valid = gdf["Cu"].notna().to_numpy()
    est, _ = krige_points(xy_of(gdf)[valid], np.log10(gdf["Cu"].to_numpy()[valid]),
                          cell_centres(make_grid()), VG)
    got = np.log10(out[CONCENTRATION].sel(element="Cu").values.astype(np.float64)).ravel()
    np.testing.assert_allclose(got, est, atol=1e-6)


def test_coincident_samples_are_averaged_in_log_space_with_a_warning():
    grid = make_grid()
    gdf = make_samples(100, seed=19)
    cx, cy = float(grid.x.values[10]), float(grid.y.values[12])
    dup = gpd.GeoDataFrame({"As": [10.0, 1000.0], "Cu": [5.0, 5.0]},
                           geometry=gpd.points_from_xy([cx, cx], [cy, cy]), crs=CRS)
    both = gpd.GeoDataFrame(
        dict(**{c: np.concatenate([gdf[c], dup[c]]) for c in ("As", "Cu")}),
        geometry=list(gdf.geometry) + list(dup.geometry), crs=CRS,
    )
    with pytest.warns(UserWarning, match="1 samples share 1 locations.*averaged in log10"):
        out = grid_samples(both, grid, ["As", "Cu"], variogram=VG)
    assert out[CONCENTRATION].sel(element="As").values[12, 10] == pytest.approx(100.0, rel=1e-5)
    assert out.attrs["n_locations"] == 101


def test_samples_in_another_crs_are_reprojected():
    gdf = make_samples(150, seed=20)
    grid = make_grid()
    ref = grid_samples(gdf, grid, ["As"], variogram=VG)
    out = grid_samples(gdf.to_crs("EPSG:4326"), grid, ["As"], variogram=VG)
    np.testing.assert_allclose(out[CONCENTRATION].values, ref[CONCENTRATION].values, rtol=1e-4)


def test_bad_parameters_raise_geosr_errors():
    gdf, grid = make_samples(30, seed=21), make_grid()
    with pytest.raises(GeoSRError, match="method"):
        grid_samples(gdf, grid, ["As"], method="spline")
    with pytest.raises(GeoSRError, match="return_variance"):
        grid_samples(gdf, grid, ["As"], method="idw", return_variance=True)
    with pytest.raises(GeoSRError, match="max_distance"):
        grid_samples(gdf, grid, ["As"], max_distance=-5)
    with pytest.raises(GeoSRError, match="'Zn'"):
        grid_samples(gdf, grid, ["Zn"])
    with pytest.raises(GeoSRError, match="CRS"):
        grid_samples(gdf.set_crs(None, allow_override=True), grid, ["As"])
    with pytest.raises(GeoSRError, match="geographic"):
        grid_samples(gdf, grid.rio.write_crs("EPSG:4326"), ["As"])


def test_constant_values_fall_back_with_a_warning():
    gdf = make_samples(40, seed=22)
    gdf["As"] = 7.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = grid_samples(gdf, make_grid(), ["As"], max_distance=1e9)
    assert any("all values are equal" in str(w.message) for w in caught)
    np.testing.assert_allclose(out[CONCENTRATION].values, 7.0, rtol=1e-5)


# --- the package -----------------------------------------------------------------------------
def test_the_package_exports_its_public_api():
    for name in gridding.__all__:
        assert getattr(gridding, name) is not None, name
    assert geochem_sr.grid_samples is grid_samples
    assert {"grid_samples", "krige_points", "idw_points", "fit_variogram",
            "empirical_variogram", "semivariance"} <= set(gridding.__all__)


def test_importing_the_package_does_not_import_numba():
    code = ("import sys, numpy as np, geochem_sr.gridding as g\n"
            "assert 'numba' not in sys.modules\n"
            "g.idw_points(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([1.0, 2.0]),"
            " np.array([[0.5, 0.0]]))\n"
            "assert 'numba' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("model", ["spherical", "exponential"])
def test_an_exactly_singular_system_falls_back_to_least_squares(model):
    # a duplicated sample makes the system singular (Cholesky and LU both fail): the least
    # squares solution shares the weight between the two copies, as if there were one
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 1000, (40, 2))
    z = np.sin(xy[:, 0] / 200) + xy[:, 1] / 1000
    q = rng.uniform(0, 1000, (30, 2))
    vg = {"model": model, "range": 600.0, "sill": 1.0, "nugget": 0.0}
    est, var = krige_points(xy, z, q, vg, k=40, return_variance=True)
    est2, var2 = krige_points(np.vstack([xy, xy[:1]]), np.append(z, z[0]), q, vg, k=41,
                              return_variance=True)
    np.testing.assert_allclose(est2, est, atol=1e-10)
    np.testing.assert_allclose(var2, var, atol=1e-10)


def test_kriging_with_a_search_radius_leaves_empty_neighbourhoods_nan():
    """A point or cell with no sample within the radius gets NaN (it raised
    ZeroDivisionError), and the others are as without it."""
    from geochem_sr.gridding import krige_points

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (50, 2))
    z = rng.normal(size=50)
    q = np.array([[500.0, 500.0], [5000.0, 5000.0], [1000.0, 1100.0]])
    vg = {"model": "spherical", "range": 400.0, "sill": 1.0, "nugget": 0.1}
    est, var = krige_points(xy, z, q, vg, k=8, search_radius=300.0, return_variance=True)
    assert np.isnan(est[1]) and np.isnan(var[1])
    alone, _ = krige_points(xy, z, q[[0, 2]], vg, k=8, search_radius=300.0)
    np.testing.assert_array_equal(est[[0, 2]], alone)
    assert np.isfinite(alone).all()


# --- neighbourhood reach ----------------------------------------------------------------------
def test_neighbourhood_reach_is_that_of_the_element_with_the_fewest_sites():
    """An element measured at few sites is gridded from those alone: its k-th neighbour is
    farther than the others', and that larger distance is the reach."""
    grid = make_grid()
    samples = make_samples(200, seed=3)
    samples.loc[samples.index[40:], "Cu"] = np.nan  # Cu at 40 of the 200 sites only
    out = grid_samples(samples, grid, ["As", "Cu"], method="idw")
    covered = out[COVERAGE].values
    cells = cell_centres(grid)[covered.ravel()]
    k = out.attrs["k"]
    expect = {e: cKDTree(xy_of(samples)[samples[e].notna().to_numpy()]).query(cells, k=k)[0]
              .max() for e in ("As", "Cu")}
    assert expect["Cu"] > 1.5 * expect["As"]
    reach = gridding.neighbourhood_reach(samples, grid, covered, k)
    np.testing.assert_allclose(reach, expect["Cu"])
    only_as = gridding.neighbourhood_reach(samples, grid, covered, k, elements=["As"])
    np.testing.assert_allclose(only_as, expect["As"])
    blocks = gridding.neighbourhood_reach(samples, grid, covered, k, block_cells=7)
    assert blocks == reach  # queried a few rows at a time, same answer
    assert gridding.neighbourhood_reach(samples, grid, np.zeros_like(covered), k) == 0.0
