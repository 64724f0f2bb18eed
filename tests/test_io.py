import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

import geochem_sr as gs
from geochem_sr import io, schema


def _csv(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_parse_censored_policies():
    s = pd.Series(["1.5", "<0.4", 2, "ND", "< 1e-1", -0.6])
    half, n = io.parse_censored(s)
    assert n == 3
    np.testing.assert_allclose(half.values, [1.5, 0.2, 2.0, np.nan, 0.05, 0.3])
    dl, _ = io.parse_censored(s, policy="dl")
    assert dl.iloc[1] == 0.4
    nan, _ = io.parse_censored(s, policy="nan")
    assert np.isnan(nan.iloc[1])


def test_parse_censored_text_named():
    with pytest.raises(gs.DataError, match=r"column 'Cu'.*'abc'"):
        io.parse_censored(pd.Series(["1", "abc"]), name="Cu")


def test_read_csv_detects_columns_and_records_policy(tmp_path):
    p = _csv(tmp_path, "Easting,Northing,As,Au\n500000,4000000,3.1,<0.3\n500100,4000050,2.0,1.1\n")
    gdf = gs.read_samples(p, crs="EPSG:32650")
    assert list(gdf["As"]) == [3.1, 2.0]
    assert gdf["Au"].iloc[0] == pytest.approx(0.15)
    assert gdf.attrs[schema.ATTR_CENSORING] == "half"
    assert gdf.attrs["censored_counts"] == {"As": 0, "Au": 1}
    assert gdf.attrs["units"]["Au"] == "ppb"
    assert gdf.geometry.x.iloc[1] == 500100


def test_read_csv_missing_crs(tmp_path):
    p = _csv(tmp_path, "x,y,As\n1,2,3\n")
    with pytest.raises(gs.CRSError, match="pass crs"):
        gs.read_samples(p)


def test_read_csv_wrong_columns(tmp_path):
    p = _csv(tmp_path, "foo,bar,As\n1,2,3\n")
    with pytest.raises(gs.InputFileError, match="coordinate columns"):
        gs.read_samples(p, crs="EPSG:32650")


def test_read_csv_text_in_numeric(tmp_path):
    p = _csv(tmp_path, "x,y,As\n1,2,3\n3,4,high\n")
    with pytest.raises(gs.DataError, match="column 'As'.*'high'"):
        gs.read_samples(p, crs="EPSG:32650")


def test_read_empty_file(tmp_path):
    p = _csv(tmp_path, "")
    with pytest.raises(gs.InputFileError, match="empty"):
        gs.read_samples(p, crs="EPSG:32650")


def test_missing_element_column(tmp_path):
    p = _csv(tmp_path, "x,y,As\n1,2,3\n")
    with pytest.raises(gs.InputFileError, match=r"element columns \['Cu'\]"):
        gs.read_samples(p, ["As", "Cu"], crs="EPSG:32650")


def test_rows_without_coordinates_dropped(tmp_path):
    p = _csv(tmp_path, "x,y,As\n1,2,3\n,,4\n5,6,7\n")
    with pytest.warns(UserWarning, match="dropped 1 rows"):
        gdf = gs.read_samples(p, crs="EPSG:32650")
    assert len(gdf) == 2


def test_lonlat_csv_reprojected(tmp_path):
    p = _csv(tmp_path, "lon,lat,Cu\n117.0,36.1,20\n117.01,36.11,25\n")
    gdf = gs.read_samples(p, target_crs="EPSG:32650")
    assert gdf.crs.to_epsg() == 32650
    assert 400000 < gdf.geometry.x.iloc[0] < 600000


def test_gpkg_round_trip(tmp_path):
    import geopandas as gpd

    gdf = gpd.GeoDataFrame({"Zn": ["50", "<10"]},
                           geometry=gpd.points_from_xy([0, 100], [0, 100]), crs="EPSG:32650")
    gdf.to_file(tmp_path / "s.gpkg")
    back = gs.read_samples(tmp_path / "s.gpkg")
    assert back["Zn"].tolist() == [50.0, 5.0]


def test_read_dem_tif(tmp_path, survey):
    dem = survey.elevation.rio.write_nodata(-9999.0)
    dem = dem.where(dem.x < dem.x[-1], -9999.0)
    dem.rio.to_raster(tmp_path / "dem.tif")
    back = gs.read_dem(tmp_path / "dem.tif")
    assert back.dims == ("y", "x") and back.dtype == np.float32
    assert np.isnan(back.values[:, -1]).all() and back.rio.crs.to_epsg() == 32650


def test_write_open_round_trip_and_gdal(tmp_path, survey):
    path = gs.write_survey(survey, tmp_path / "s.zarr")
    back = gs.open_survey(path)
    assert back.rio.crs == survey.rio.crs
    assert back.rio.transform() == survey.rio.transform()
    xr.testing.assert_allclose(back.lr.load(), survey.lr)
    assert list(back.element_units.values) == ["ppm", "ppm", "ppb"]
    with rasterio.open(f'ZARR:"{path}":/lr') as src:
        assert src.crs.to_epsg() == 32650
        assert src.transform == survey.rio.transform()
        assert src.count == 3
        np.testing.assert_allclose(src.read(2), survey.lr.values[1])
        assert np.isnan(src.nodata)


def test_failed_write_leaves_nothing(tmp_path, survey):
    bad = survey.assign(lr=survey.lr.transpose("y", "x", "element"))
    with pytest.raises(gs.SchemaError):
        gs.write_survey(bad, tmp_path / "bad.zarr")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_store_refused(tmp_path, survey):
    ds = survey.copy()
    ds.attrs[schema.ATTR_INCOMPLETE] = "3 of 9 tiles written"
    path = gs.write_survey(ds, tmp_path / "p.zarr")
    with pytest.raises(gs.IncompleteStoreError, match="not finished"):
        gs.open_survey(path)
    with pytest.warns(UserWarning, match="not finished"):
        gs.open_survey(path, allow_incomplete=True)


def test_open_missing(tmp_path):
    with pytest.raises(gs.InputFileError, match="not found"):
        gs.open_survey(tmp_path / "nope.zarr")


def test_bad_policy_or_marks_are_parameter_errors():
    with pytest.raises(gs.ParameterError, match=r"censored policy.*'quarter'"):
        io.parse_censored(pd.Series(["1"]), policy="quarter")
    with pytest.raises(gs.ParameterError, match=r"decimal / thousands.*decimal=','"):
        io.parse_censored(pd.Series(["1"]), decimal=",", thousands=",")
