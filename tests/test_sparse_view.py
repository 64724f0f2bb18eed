"""Covariates as the sparse survey sees them (geochem_sr.features.sparse_view) and the channels
built on them."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from conftest import make_survey

from geochem_sr import features, schema
from geochem_sr.errors import DataError, ModelMismatchError, ParameterError, SchemaError
from geochem_sr.features import add_lr_view, lr_view, site_counts


def _with_sites(ds: xr.Dataset, step: int = 4) -> xr.Dataset:
    sites = np.zeros((ds.sizes["y"], ds.sizes["x"]), np.int16)
    sites[1::step, 2::step] = 1
    return ds.assign({schema.LR_SITES: ((schema.Y, schema.X), sites)})


def test_site_counts_counts_samples_per_cell_and_ignores_off_grid():
    ds = make_survey().rio.write_crs("EPSG:32650")
    x0, y0 = float(ds.x[3]), float(ds.y[2])
    pts = [shapely.Point(x0, y0), shapely.Point(x0 + 10, y0 - 10), shapely.Point(0, 0)]
    counts = site_counts(gpd.GeoDataFrame(geometry=pts, crs="EPSG:32650"), ds)
    assert counts.dtype == np.int16 and int(counts.sum()) == 2
    assert int(counts.isel(y=2, x=3)) == 2


def test_lr_view_honours_the_sites_and_smooths_between():
    ds = _with_sites(make_survey().rio.write_crs("EPSG:32650"))
    view = lr_view(ds, ["elevation"])
    assert view.dims == (schema.COVARIATE, schema.Y, schema.X)
    assert list(view[schema.COVARIATE].values) == ["elevation"]
    sites = ds[schema.LR_SITES].values > 0
    np.testing.assert_allclose(view.values[0][sites], ds.elevation.values[sites], rtol=1e-6)
    # between the sites the view is smoother than the covariate itself
    assert view.values[0][~sites].std() < ds.elevation.values[~sites].std()


def test_lr_view_dask_equals_numpy_and_is_lazy():
    ds = _with_sites(make_survey().rio.write_crs("EPSG:32650"))
    eager = lr_view(ds, ["elevation"])
    lazy = lr_view(ds.chunk({"y": 5, "x": 6}), ["elevation"])
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)


def test_unseen_channel_is_covariate_minus_its_view():
    ds = add_lr_view(_with_sites(make_survey().rio.write_crs("EPSG:32650")), ["elevation"])
    x = features.stack_inputs(ds, ["unseen:elevation"])
    np.testing.assert_allclose(x.values[0], ds.elevation.values - ds.lr_view.values[0],
                               atol=1e-3)
    assert features.channel_names("geochem+terrain+unseen", ["As"])[-4:] == [
        "unseen:elevation", "unseen:slope", "unseen:aspect_sin", "unseen:aspect_cos"]


def test_missing_sites_view_or_covariate_are_named():
    ds = make_survey().rio.write_crs("EPSG:32650")
    with pytest.raises(SchemaError, match="lr_sites"):
        lr_view(ds, ["elevation"])
    with pytest.raises(SchemaError, match="lr_view"):
        features.stack_inputs(ds, ["unseen:elevation"])
    with_view = add_lr_view(_with_sites(ds), ["elevation"])
    with pytest.raises(SchemaError, match="lacks covariate 'slope'"):
        features.stack_inputs(with_view.assign(slope=ds.elevation * 0), ["unseen:slope"])
    no_sites = ds.assign({schema.LR_SITES: ((schema.Y, schema.X),
                                            np.zeros(ds.elevation.shape, np.int16))})
    with pytest.raises(DataError, match="sample sites"):
        lr_view(no_sites, ["elevation"])
    with pytest.raises(SchemaError, match="covariate group"):
        schema.parse_input_set("geochem+unseen")


def test_unseen_aspect_turns_with_the_map():
    names = ["aspect_sin", "aspect_cos", "unseen:aspect_sin", "unseen:aspect_cos"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 6)).astype("float32")
    for k in range(8):
        out, _ = features.augment(x, None, k, names)
        # the two vector pairs get the same rotation: equal input pairs stay equal
        same, _ = features.augment(np.concatenate([x[:2], x[:2]]), None, k, names)
        np.testing.assert_array_equal(same[:2], same[2:])
        back, _ = features.augment(out, None, features.inverse_augmentation(k), names)
        np.testing.assert_allclose(back, x)
    with pytest.raises(ParameterError, match="both"):
        features.augment(x[:3], None, 1, names[:3])


def test_a_model_with_unseen_channels_names_what_the_dataset_lacks():
    from geochem_sr.models import GeoSRModel

    ds = add_lr_view(_with_sites(make_survey().rio.write_crs("EPSG:32650")), ["elevation"])
    model = GeoSRModel(network_name="srcnn", network_config={}, state_dict={},
                       inputs="geochem+terrain+unseen",
                       channels=["lr:As", "elevation", "unseen:elevation", "unseen:slope"],
                       elements=["As"], units={"As": "ppm"},
                       norm_stats={})
    with pytest.raises(ModelMismatchError, match="slope"):
        model.check_compatible(ds)
    with pytest.raises(ModelMismatchError, match="lr_view"):
        model.check_compatible(ds.drop_vars("lr_view"))


def test_auto_inputs_take_every_group_the_survey_provides():
    import geochem_sr as gs

    region = gs.synthetic_region(seed=0, size_km=(3, 3))
    full = gs.build_survey(region.samples_sparse, dem=region.dem, geology=region.geology,
                           faults=region.faults, method="idw")
    assert features.resolve_inputs("auto", full) == schema.FULL_INPUTS
    assert len(features.channel_names(schema.FULL_INPUTS, full.element.values)) == 32
    no_faults = full.drop_vars([schema.FAULT_DISTANCE])
    assert features.resolve_inputs("auto", no_faults) == "geochem+terrain+geology+contacts+unseen"
    stale = no_faults.drop_vars([schema.LR_VIEW, schema.COVARIATE]).assign(
        {schema.LR_VIEW: full[schema.LR_VIEW].isel(covariate=[0])})
    assert features.resolve_inputs("auto", stale) == "geochem+terrain+geology+contacts"
    x = features.stack_inputs(full, features.channel_names(schema.FULL_INPUTS,
                                                           full.element.values))
    assert np.isfinite(x.values).mean() > 0.9


def test_unseen_aspect_channels_are_aspect_minus_its_view():
    ds = _with_sites(make_survey().rio.write_crs("EPSG:32650"))
    rng = np.random.default_rng(1)
    ds["aspect"] = (("y", "x"), rng.uniform(0, 360, ds.elevation.shape).astype("float32"))
    ds = add_lr_view(ds, ["aspect_sin", "aspect_cos"])
    x = features.stack_inputs(ds, ["aspect_sin", "aspect_cos", "unseen:aspect_sin",
                                   "unseen:aspect_cos"]).values
    rad = np.deg2rad(ds.aspect.values)
    np.testing.assert_allclose(x[0], np.sin(rad), atol=1e-5)
    np.testing.assert_allclose(x[2], np.sin(rad) - ds.lr_view.values[0], atol=1e-5)
    np.testing.assert_allclose(x[3], np.cos(rad) - ds.lr_view.values[1], atol=1e-5)
    assert not np.allclose(x[2], x[3])


def test_add_lr_view_replaces_the_covariates_and_refuses_unseen_ones():
    from geochem_sr.features import refresh_lr_view

    ds = _with_sites(make_survey().rio.write_crs("EPSG:32650"))
    ds["slope"] = ds.elevation * 0 + 5.0
    one = add_lr_view(ds, ["elevation"])
    two = add_lr_view(one, ["elevation", "slope"])
    assert list(two.covariate.values) == ["elevation", "slope"]
    assert np.isfinite(two.lr_view.values).all()
    # changed covariates: refresh sees them again
    moved = two.assign(elevation=two.elevation + 100)
    fresh = refresh_lr_view(moved)
    np.testing.assert_allclose(fresh.lr_view.values[0], two.lr_view.values[0] + 100, rtol=1e-5)
    blind = ds.assign(slope=ds.slope.where(ds[schema.LR_SITES] == 0))
    with pytest.raises(DataError, match="slope"):
        lr_view(blind, ["slope"])
