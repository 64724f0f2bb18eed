"""Tests of geochem_sr.data.synthetic: the embedded synthetic survey area."""

from __future__ import annotations

import re

import numpy as np
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from scipy import ndimage
from scipy.spatial import cKDTree

from geochem_sr import schema
from geochem_sr.data import SyntheticRegion, synthetic_region
from geochem_sr.errors import GeoSRError

SMALL = {"size_km": (4.0, 4.0)}
# regional medians of Pei et al. (2025), Table 3 (ppm; Au and Ag in ppb)
PAPER_MEDIANS = {"As": 6.5, "Sb": 0.4, "Bi": 0.2, "Au": 1.3, "Ag": 50.0, "Cu": 17.0,
                 "Pb": 17.0, "Zn": 50.0, "Sn": 2.0, "Mo": 1.0}


@pytest.fixture(scope="module")
def small() -> SyntheticRegion:
    return synthetic_region(seed=3, **SMALL)


@pytest.fixture(scope="module")
def default() -> SyntheticRegion:
    return synthetic_region(seed=0)


def _numeric(col) -> np.ndarray:
    """Uncensored values of an element column as floats."""
    return np.array([v for v in col if not isinstance(v, str)], dtype=float)


def _censored(col) -> list[str]:
    return [v for v in col if isinstance(v, str)]


def test_same_seed_is_bit_identical(small: SyntheticRegion) -> None:
    again = synthetic_region(seed=3, **SMALL)
    np.testing.assert_array_equal(small.dem.values, again.dem.values)
    np.testing.assert_array_equal(small.truth.values, again.truth.values)
    for name in ("geology", "faults", "samples_sparse", "samples_dense"):
        assert_geodataframe_equal(getattr(small, name), getattr(again, name))
    assert small.samples_dense.attrs == again.samples_dense.attrs


def test_different_seed_differs(small: SyntheticRegion) -> None:
    other = synthetic_region(seed=4, **SMALL)
    assert not np.array_equal(small.dem.values, other.dem.values)
    assert not np.array_equal(small.truth.values, other.truth.values)
    assert not small.faults.geometry.geom_equals(other.faults.geometry).all()


def test_element_subset_gives_the_same_values(small: SyntheticRegion) -> None:
    sub = synthetic_region(seed=3, elements=("Cu", "Au"), **SMALL)
    assert list(sub.samples_sparse.columns) == ["sample_id", "Cu", "Au", "geometry"]
    np.testing.assert_array_equal(sub.truth.sel(element="Au").values,
                                  small.truth.sel(element="Au").values)
    assert sub.samples_dense["Cu"].tolist() == small.samples_dense["Cu"].tolist()


def test_sample_counts_follow_density(small: SyntheticRegion) -> None:
    area = 16.0  # km²
    assert abs(len(small.samples_sparse) - 4.0 * area) <= 0.1 * 4.0 * area
    assert abs(len(small.samples_dense) - 16.0 * area) <= 0.1 * 16.0 * area
    xmin, ymin, xmax, ymax = small.bounds
    for gdf in (small.samples_sparse, small.samples_dense):
        x, y = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
        assert (x > xmin).all() and (x < xmax).all() and (y > ymin).all() and (y < ymax).all()
        assert gdf["sample_id"].is_unique
        assert gdf.crs == small.crs
    # the two surveys sit on independent sites
    d, _ = cKDTree(np.c_[small.samples_dense.geometry.x, small.samples_dense.geometry.y]).query(
        np.c_[small.samples_sparse.geometry.x, small.samples_sparse.geometry.y])
    assert (d > 1e-6).all()


def test_dense_extent_limits_the_dense_survey() -> None:
    x0, y0 = 500000.0, 4000000.0
    extent = (x0 + 1000, y0 + 1000, x0 + 3000, y0 + 2500)  # 3 km²
    region = synthetic_region(seed=1, dense_extent=extent, dense_density=20.0, **SMALL)
    pts = region.samples_dense.geometry
    assert pts.x.between(extent[0], extent[2]).all() and pts.y.between(extent[1], extent[3]).all()
    assert abs(len(pts) - 60) <= 6
    assert abs(len(region.samples_sparse) - 64) <= 6


def test_units_detection_limits_and_plausible_levels(small: SyntheticRegion) -> None:
    assert small.units["Au"] == "ppb" and small.units["Ag"] == "ppb" and small.units["Cu"] == "ppm"
    for gdf in (small.samples_sparse, small.samples_dense):
        assert gdf.attrs["units"] == small.units
        assert gdf.attrs["detection_limits"] == small.detection_limits
    for el in small.elements:
        col = small.samples_dense[el]
        assert col.dtype == object
        values = _numeric(col)
        assert (values >= small.detection_limits[el]).all()
        median = np.median(values)
        assert PAPER_MEDIANS[el] / 2 < median < PAPER_MEDIANS[el] * 2, (el, median)
        assert values.max() / median < 5000  # Table 3: Au max/median ~1400


def test_censored_values_are_lab_strings(default: SyntheticRegion) -> None:
    pattern = re.compile(r"^<(\d+(\.\d+)?)$")
    for el in ("Au", "Bi", "Mo"):
        col = default.samples_dense[el]
        cens = _censored(col)
        assert 0.005 < len(cens) / len(col) < 0.15, (el, len(cens) / len(col))
        for text in cens:
            match = pattern.match(text)
            assert match is not None, text
            assert float(match.group(1)) == default.detection_limits[el]
    # elements far above their detection limit are (almost) never censored
    assert len(_censored(default.samples_dense["Zn"])) <= 0.005 * len(default.samples_dense)


def test_geology_tiles_the_region(small: SyntheticRegion, default: SyntheticRegion) -> None:
    for region in (small, default):
        geo = region.geology
        assert {"unit", "age", "rock_class"} <= set(geo.columns)
        assert (geo.geom_type == "Polygon").all() and geo.is_valid.all()
        assert geo.crs == region.crs
        xmin, ymin, xmax, ymax = region.bounds
        area = (xmax - xmin) * (ymax - ymin)
        assert geo.area.sum() == pytest.approx(area, rel=1e-6)
        assert shapely.union_all(geo.geometry.values).area == pytest.approx(area, rel=1e-6)
    units = set(default.geology["unit"])
    assert 10 <= len(units) <= 14
    assert {"Cenozoic sediments", "Paleoproterozoic Jinshuikou Group", "Triassic granite",
            "Triassic granodiorite", "Ordovician tonalite"} <= units
    assert set(default.geology["rock_class"]) >= {"sediment", "sedimentary", "metamorphic",
                                                  "intrusive"}


def test_cenozoic_sediments_fill_the_valleys(default: SyntheticRegion) -> None:
    geo, dem = default.geology, default.dem
    cz = geo[geo["unit"] == "Cenozoic sediments"]
    x, y = np.meshgrid(dem.x.values, dem.y.values)
    inside = shapely.contains_xy(shapely.union_all(cz.geometry.values), x, y)
    assert dem.values[inside].mean() < np.percentile(dem.values, 30)


def test_dem(small: SyntheticRegion) -> None:
    dem = small.dem
    assert dem.dims == ("y", "x") and dem.dtype == np.float32 and dem.name == "elevation"
    assert dem.attrs["units"] == "m"
    assert dem.rio.crs is not None and not dem.rio.crs.is_geographic
    assert dem.rio.resolution() == (25.0, -25.0)
    assert float(dem.max() - dem.min()) > 200
    assert 2500 < float(dem.min()) and float(dem.max()) < 4500
    xmin, ymin, xmax, ymax = dem.rio.bounds()
    b = small.bounds
    assert xmin < b[0] and ymin < b[1] and xmax > b[2] and ymax > b[3]
    assert xmax - xmin < b[2] - b[0] + 500


def test_truth_follows_the_survey_convention(small: SyntheticRegion) -> None:
    truth = small.truth
    assert truth.name == "truth" and truth.dims == ("element", "y", "x")
    assert truth.dtype == np.float32
    assert truth.rio.crs is not None
    assert truth["element_units"].values.tolist() == [small.units[e] for e in small.elements]
    grid = schema.make_grid(small.bounds, small.cell_size, small.crs)
    schema.check_same_grid(truth, grid, "truth")
    assert (truth.values > 0).all() and np.isfinite(truth.values).all()
    coarse = synthetic_region(seed=3, cell_size=100.0, **SMALL).truth
    assert coarse.shape == (10, 40, 40)


def test_faults_cross_the_region(default: SyntheticRegion) -> None:
    faults = default.faults
    assert 3 <= len(faults) <= 8 and (faults.geom_type == "LineString").all()
    assert (faults.length > 3000).all()


def _fault_distance(region: SyntheticRegion) -> np.ndarray:
    """Distance (m) from each truth cell to the nearest fault, within half a cell."""
    from rasterio.features import rasterize

    truth = region.truth
    on_fault = rasterize(region.faults.geometry, out_shape=truth.shape[1:], all_touched=True,
                         transform=truth.rio.transform())
    return ndimage.distance_transform_edt(on_fault == 0) * region.cell_size


def _near_faults(region: SyntheticRegion, dist: float) -> np.ndarray:
    return _fault_distance(region) < dist


def test_fault_anomalies_are_narrower_than_the_sparse_spacing(default: SyntheticRegion) -> None:
    """Detail below a 500 m kernel concentrates along the faults for Au and As."""
    near = _near_faults(default, 150.0)
    far = ~_near_faults(default, 600.0)
    for el in ("Au", "As"):
        log = np.log10(default.truth.sel(element=el).values)
        detail = np.abs(log - ndimage.uniform_filter(log, 10))  # 500 m window (50 m cells)
        assert detail[near].mean() > 1.25 * detail[far].mean(), el


def test_dense_survey_resolves_what_the_sparse_misses(default: SyntheticRegion) -> None:
    """Interpolating each survey: near faults the dense map is much closer to the truth."""
    x, y = np.meshgrid(default.truth.x.values, default.truth.y.values)
    cells = np.c_[x.ravel(), y.ravel()]
    near = _near_faults(default, 150.0).ravel()
    log_truth = np.log10(default.truth.sel(element="Au").values).ravel()
    errors = {}
    for name in ("samples_sparse", "samples_dense"):
        gdf = getattr(default, name)
        dl = default.detection_limits["Au"]
        vals = np.log10([dl / 2 if isinstance(v, str) else v for v in gdf["Au"]])
        d, i = cKDTree(np.c_[gdf.geometry.x, gdf.geometry.y]).query(cells, k=8)
        w = 1.0 / np.maximum(d, 1.0) ** 2
        idw = (vals[i] * w).sum(1) / w.sum(1)
        errors[name] = np.sqrt(np.mean((idw - log_truth)[near] ** 2))
    assert errors["samples_dense"] < 0.85 * errors["samples_sparse"], errors


@pytest.mark.parametrize(
    "kwargs",
    [{"size_km": (0, 4)}, {"cell_size": -5}, {"sparse_density": 0}, {"elements": ("Xx",)},
     {"seed": -1}, {"crs": "EPSG:4326"}, {"dense_extent": (0.0, 0.0, 10.0, 10.0)}],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(GeoSRError):
        synthetic_region(**{"size_km": (2.0, 2.0), **kwargs})
