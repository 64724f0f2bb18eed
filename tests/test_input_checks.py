"""Bad input gets a clear GeoSRError (file, column, expected, found, fix) or a warned repair.

Cases found by fault injection (numbered as in the report) and their neighbours.
"""

from __future__ import annotations

import re
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import shapely
import xarray as xr
from affine import Affine

import geochem_sr as gs
from geochem_sr import io, schema
from geochem_sr.covariates import embed_geology, rasterize_geology, terrain_from_dem
from geochem_sr.errors import CRSError, DataError, GridError, InputFileError, ParameterError

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0
ROWS = ("500000,4000000", "500100,4000100", "500200,4000050")


def _csv(tmp_path, text: str, name: str = "s.csv", encoding: str = "utf-8"):
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


def _samples(tmp_path, header: str, *values: str, **kw):
    """Read a CSV of x,y + ``header`` whose rows get the coordinates of ROWS."""
    text = f"x,y,{header}\n" + "".join(f"{xy},{v}\n" for xy, v in zip(ROWS, values, strict=False))
    return gs.read_samples(_csv(tmp_path, text), crs=CRS, **kw)


def _dem(values, cell: float = 50.0, crs: str = CRS, x0: float = X0 - 200,
         y0: float = Y0 + 1200) -> xr.DataArray:
    values = np.asarray(values, dtype=np.float32)
    ny, nx = values.shape
    x = x0 + cell / 2 + cell * np.arange(nx)
    y = y0 - cell / 2 - cell * np.arange(ny)
    return xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs(crs)


def _grid(width: float = 1000.0, height: float = 1000.0, cell: float = 50.0) -> xr.Dataset:
    return schema.make_grid((X0, Y0, X0 + width, Y0 + height), cell, CRS)


# --- 1. missing-value codes ---------------------------------------------------------------
def test_missing_value_codes_are_nan_with_a_warning_other_negatives_censored(tmp_path):
    with pytest.warns(UserWarning, match=r"column 'As': 2 values equal to missing-value codes"):
        gdf = _samples(tmp_path, "As", "-999", '"-9999"', "-0.6")
    assert np.isnan(gdf["As"].iloc[0]) and np.isnan(gdf["As"].iloc[1])
    assert gdf["As"].iloc[2] == pytest.approx(0.3)
    assert gdf.attrs["censored_counts"] == {"As": 1}


def test_missing_codes_can_be_switched_off():
    s, n = io.parse_censored(pd.Series([-999.0, -99]), missing_codes=())
    assert s.tolist() == [499.5, 49.5] and n == 2


# --- 2. decimal commas, thousands, separators -------------------------------------------
def test_thousands_like_comma_is_ambiguous_and_names_column_and_row(tmp_path):
    with pytest.raises(DataError, match=r"s\.csv.*column 'As'.*'1,500'.*rows \[0\]"
                                        r".*decimal=','.*thousands=','"):
        _samples(tmp_path, "As", '"1,500"', "2", "3")
    assert _samples(tmp_path, "As", '"1,500"', "2", "3", thousands=",")["As"].iloc[0] == 1500
    assert _samples(tmp_path, "As", '"1,500"', "2", "3", decimal=",")["As"].iloc[0] == 1.5
    with pytest.raises(DataError, match="12,345,678"):
        io.parse_censored(pd.Series(["12,345,678"]), name="Cu")
    s, _ = io.parse_censored(pd.Series(["12,345,678.5"]), thousands=",")
    assert s.iloc[0] == 12345678.5


def test_unambiguous_decimal_comma_is_read_with_a_warning():
    with pytest.warns(UserWarning, match=r"decimal comma.*'1,5'"):
        s, n = io.parse_censored(pd.Series(["1,5", "0,500", "<0,4"]), name="As")
    np.testing.assert_allclose(s, [1.5, 0.5, 0.2])
    assert n == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s, _ = io.parse_censored(pd.Series(["1,5", "1.234,5"]), decimal=",", thousands=".")
    np.testing.assert_allclose(s, [1.5, 1234.5])


def test_semicolon_csv_is_detected(tmp_path):
    text = "x;y;As;Cu\n500000,5;4000000;1,5;20\n500100;4000100;2;<1\n"
    gdf = gs.read_samples(_csv(tmp_path, text), crs=CRS, decimal=",")
    assert gdf["As"].tolist() == [1.5, 2.0] and gdf["Cu"].tolist() == [20.0, 0.5]
    assert gdf.geometry.x.iloc[0] == 500000.5


def test_unknown_separator_is_named(tmp_path):
    with pytest.raises(InputFileError, match=r"separated by.*found \['x:y:As'\].*sep="):
        gs.read_samples(_csv(tmp_path, "x:y:As\n1:2:3\n"), crs=CRS)


def test_unquoted_comma_number_is_refused_not_shifted(tmp_path):
    text = "x,y,As\n500000,4000000,1,500\n500100,4000100,2\n"
    with pytest.raises(InputFileError, match=r"at most 3 fields.*on line 2;.*quote"):
        gs.read_samples(_csv(tmp_path, text), crs=CRS)
    later = "x,y,As\n500000,4000000,1\n\n500100,4000100,2,500\n"  # pandas' ParserError
    with pytest.raises(InputFileError, match=r"at most 3 fields.*on line 4;.*quote"):
        gs.read_samples(_csv(tmp_path, later), crs=CRS)


# --- 3. non-finite and implausible values ------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400"])
def test_non_finite_values_are_refused(tmp_path, value):
    with pytest.raises(DataError, match=rf"column 'As': expected finite.*'{value}'.*rows \[1\]"):
        _samples(tmp_path, "As", "1", value, "2")


def test_non_finite_float_in_a_geodataframe_is_refused():
    gdf = gpd.GeoDataFrame({"Cu": [1.0, np.inf]}, geometry=gpd.points_from_xy(
        [X0, X0 + 100], [Y0, Y0 + 100]), crs=CRS)
    with pytest.raises(DataError, match=r"column 'Cu': expected finite.*rows \[1\]"):
        gs.read_samples(gdf)


@pytest.mark.parametrize(("unit", "limit"), [("ppm", 1e6), ("ppb", 1e9), ("pct", 100.0),
                                             ("%", 100.0), ("g/t", 1e6), ("mg/kg", 1e6),
                                             ("ug/kg", 1e9)])
def test_concentrations_above_100_percent_are_refused(tmp_path, unit, limit):
    ok = _samples(tmp_path, "Cu", f"{limit:g}", "1", "2", units={"Cu": unit})
    assert ok["Cu"].iloc[0] == limit
    expected = re.escape(f"column 'Cu': expected concentrations up to {limit:g} {unit}")
    with pytest.raises(DataError, match=rf"{expected}.*rows \[0\]"):
        _samples(tmp_path, "Cu", f"{limit * 1.01:g}", "1", "2", units={"Cu": unit})


def test_1e30_and_1e300_are_refused(tmp_path):
    for value in ("1e30", "1e300"):
        with pytest.raises(DataError, match=r"up to 1e\+06 ppm.*rows \[2\]"):
            _samples(tmp_path, "As", "1", "2", value)


def test_unknown_unit_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"column 'As': expected a unit in .*found 'ppn'"):
        _samples(tmp_path, "As", "1", "2", "3", units={"As": "ppn"})


def test_zero_is_below_detection_nan_with_warning_or_censored_with_a_limit(tmp_path):
    with pytest.warns(UserWarning, match=r"column 'As': 1 entries say 'below detection'"):
        gdf = _samples(tmp_path, "As", "0", "2", "3")
    assert np.isnan(gdf["As"].iloc[0])
    gdf = _samples(tmp_path, "As", "0", "2", "3", detection_limits={"As": 0.4})
    assert gdf["As"].iloc[0] == pytest.approx(0.2) and gdf.attrs["censored_counts"]["As"] == 1


# --- 4. coordinates in another CRS than declared --------------------------------------
def test_degrees_declared_as_utm_are_refused(tmp_path):
    text = "x,y,As\n116.2,35.1,1\n117.9,36.8,2\n"
    with pytest.raises(CRSError, match=r"look like longitude/latitude degrees.*EPSG:32650"
                                       r".*crs='EPSG:4326'.*target_crs='EPSG:32650'"):
        gs.read_samples(_csv(tmp_path, text), crs=CRS)


def test_metres_declared_as_degrees_are_refused(tmp_path):
    with pytest.raises(CRSError, match=r"geographic CRS EPSG:4326.*look like projected"):
        gs.read_samples(_csv(tmp_path, "x,y,As\n500000,4000000,1\n"), crs="EPSG:4326")
    with pytest.raises(CRSError, match="look like projected"):
        gs.read_samples(_csv(tmp_path, "lon,lat,As\n500000,4000000,1\n"))


def test_swapped_x_and_y_are_refused(tmp_path):
    text = "x,y,As\n4000000,500000,1\n4000100,500100,2\n"
    with pytest.raises(CRSError, match=r"x and y swapped; pass x='y', y='x'"):
        gs.read_samples(_csv(tmp_path, text), crs=CRS)


def test_dem_with_degree_bounds_in_a_projected_crs_is_refused(tmp_path):
    dem = _dem(np.full((5, 5), 100.0), cell=0.01, x0=117.0, y0=36.0)
    with pytest.raises(CRSError, match=r"DEM: coordinates .* look like longitude/latitude"):
        io.read_dem(dem)
    dem.rio.to_raster(tmp_path / "dem.tif")
    with pytest.raises(CRSError, match=r"dem\.tif.*look like longitude.*should be EPSG:4326"):
        io.read_dem(tmp_path / "dem.tif")
    with pytest.raises(CRSError, match="look like projected"):
        io.read_dem(_dem(np.full((5, 5), 100.0), crs="EPSG:4326"))


def test_geology_and_faults_in_degrees_declared_as_utm_are_refused():
    poly = gpd.GeoDataFrame({"unit": ["A"]}, geometry=[shapely.box(117, 36, 117.1, 36.1)],
                            crs=CRS)
    with pytest.raises(CRSError, match="geology: coordinates .* look like longitude"):
        io.read_geology(poly)
    line = gpd.GeoDataFrame(geometry=[shapely.LineString([(117, 36), (117.1, 36.1)])], crs=CRS)
    with pytest.raises(CRSError, match="faults: coordinates .* look like longitude"):
        io.read_faults(line)
    line_m = gpd.GeoDataFrame(geometry=[shapely.LineString([(X0, Y0), (X0 + 9, Y0)])],
                              crs="EPSG:4326")
    with pytest.raises(CRSError, match="faults: expected longitude/latitude"):
        io.read_faults(line_m)


# --- 5. element names ------------------------------------------------------------------
def test_element_that_is_not_a_chemical_symbol_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"expected chemical symbols.*found \['Xx'\]"):
        _samples(tmp_path, "As,Xx", "1,2", elements=["As", "Xx"])
    with pytest.raises(ParameterError, match=r"did you mean \{'as': 'As'\}"):
        _samples(tmp_path, "As", "1", elements=["as"])


def test_duplicated_element_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"each element once, found \['As'\]"):
        _samples(tmp_path, "As", "1", elements=["As", "As"])


# --- 6. DEM size and resolution ---------------------------------------------------------
def test_dem_of_one_cell_is_refused(tmp_path):
    dem = xr.DataArray(np.full((1, 1), 100.0, np.float32), dims=("y", "x"),
                       coords={"y": [Y0 + 500], "x": [X0 + 500]}).rio.write_crs(CRS)
    dem = dem.rio.write_transform(Affine(5000, 0, X0 - 2000, 0, -5000, Y0 + 3000))
    dem.rio.to_raster(tmp_path / "one.tif")
    with pytest.raises(InputFileError, match=r"one\.tif.*at least 2 x 2 cells.*found 1 x 1"):
        io.read_dem(tmp_path / "one.tif")
    with pytest.raises(GridError, match="at least 2 x 2 cells"):
        terrain_from_dem(dem, _grid())


def test_dem_much_coarser_than_the_grid_is_refused_and_a_bit_coarser_warned():
    coarse = _dem(np.arange(16.0).reshape(4, 4) * 10, cell=1000.0, x0=X0 - 1500, y0=Y0 + 2500)
    with pytest.raises(GridError, match=r"cells of about 1000 x 1000 m are 20 times the grid's "
                                        r"50 x 50 m.*at most 4"):
        terrain_from_dem(coarse, _grid())
    mid = _dem(np.arange(400.0).reshape(20, 20), cell=150.0, x0=X0 - 500, y0=Y0 + 1500)
    with pytest.warns(UserWarning, match=r"3 times the grid's 50 x 50 m cells"):
        terrain_from_dem(mid, _grid())
    with pytest.warns(UserWarning, match="20 times"):
        terrain_from_dem(coarse, _grid(), max_coarsening=25)  # accepted when asked


def test_dem_covering_part_of_the_grid_is_refused_with_both_bounds():
    part = _dem(np.full((30, 15), 100.0), x0=X0, y0=Y0 + 1500)
    with pytest.raises(GridError, match=r"covers 75\.0% of the grid.*DEM bounds.*grid bounds"
                                        r".*at least 99% needed.*bounds="):
        terrain_from_dem(part, _grid())


# --- 7. geology away from the survey --------------------------------------------------
def test_geology_100_km_away_is_a_grid_error_with_both_bounds():
    far = gpd.GeoDataFrame({"unit": ["A", "B"]}, crs=CRS, geometry=[
        shapely.box(X0 + 1e5, Y0, X0 + 1e5 + 500, Y0 + 500),
        shapely.box(X0 + 1e5 + 500, Y0, X0 + 1e5 + 1000, Y0 + 500)])
    with pytest.raises(GridError, match=r"overlapping the survey grid, found none: geology "
                                        r"bounds \(600000\.0.*grid bounds \(500000\.0"):
        embed_geology(_grid(), far)
    with pytest.raises(GridError, match="overlapping the survey grid"):
        rasterize_geology(far, _grid())


def test_geology_between_cell_centres_is_a_grid_error():
    sliver = gpd.GeoDataFrame({"unit": ["A"]}, crs=CRS,
                              geometry=[shapely.box(X0 + 1, Y0 + 1, X0 + 10, Y0 + 10)])
    with pytest.raises(GridError, match=r"no cell centre inside a unit polygon.*geology bounds"):
        embed_geology(_grid(), sliver)


def test_geology_covering_part_of_the_grid_is_fine():
    part = gpd.GeoDataFrame({"unit": ["A", "B"]}, crs=CRS, geometry=[
        shapely.box(X0, Y0, X0 + 200, Y0 + 200), shapely.box(X0 + 200, Y0, X0 + 400, Y0 + 200)])
    ds = embed_geology(_grid(), part, vector_size=2)
    lith = ds[schema.LITHOLOGY].values
    assert (lith == -1).mean() > 0.9 and set(np.unique(lith)) == {-1, 0, 1}


# --- 8. neighbours -------------------------------------------------------------------
def test_missing_tokens_are_nan_and_detection_tokens_warn(tmp_path):
    gdf = _samples(tmp_path, "As,Cu", "n.a.,1", "-,2", ",3", elements=["Cu"])
    with pytest.warns(UserWarning, match=r"columns \['As'\] hold no value"):
        gdf = _samples(tmp_path, "As,Cu", "n.a.,1", "-,2", ",3")
    assert "As" not in gdf.columns and gdf["Cu"].tolist() == [1.0, 2.0, 3.0]
    with pytest.warns(UserWarning) as rec:
        gdf = _samples(tmp_path, "As,Cu", "<LOD,1", "bdl,2", "5,<DL")
    messages = " | ".join(str(w.message) for w in rec)
    assert "'As': 2 entries say 'below detection'" in messages
    assert "'Cu': 1 entries say 'below detection'" in messages
    assert "detection_limits={'As': 0.5}" in messages
    assert gdf["As"].iloc[:2].isna().all() and gdf["Cu"].iloc[:2].tolist() == [1.0, 2.0]
    assert np.isnan(gdf["Cu"].iloc[2])
    gdf = _samples(tmp_path, "As", "<LOD", "ND<0.5", "4", detection_limits={"As": 0.2})
    np.testing.assert_allclose(gdf["As"], [0.1, 0.25, 4.0])


def test_above_upper_limit_is_read_as_the_limit_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"above an upper limit.*read as the limit"):
        gdf = _samples(tmp_path, "Cu", ">1000", "2", "3")
    assert gdf["Cu"].iloc[0] == 1000


def test_duplicated_coordinate_column_is_refused(tmp_path):
    with pytest.raises(InputFileError, match=r"unique column names, found \['x'\]"):
        gs.read_samples(_csv(tmp_path, "x,y,x,As\n500000,4000000,500001,1\n"), crs=CRS)
    gdf = gpd.GeoDataFrame([[1.0, 2.0]], columns=["As", "As"],
                           geometry=gpd.points_from_xy([X0], [Y0]), crs=CRS)
    with pytest.raises(InputFileError, match=r"unique column names, found \['As'\]"):
        gs.read_samples(gdf)


def test_yttrium_column_is_not_taken_for_y(tmp_path):
    text = "easting,northing,Y,As\n500000,4000000,30,1\n500100,4000100,20,2\n"
    gdf = gs.read_samples(_csv(tmp_path, text), crs=CRS)
    assert gdf["Y"].tolist() == [30.0, 20.0] and gdf.geometry.y.iloc[0] == Y0


def test_unit_column_sets_the_unit_and_mixed_units_are_refused(tmp_path):
    gdf = _samples(tmp_path, "Au,Au_unit", "1,ppm", "2,ppm", "3,ppm")
    assert gdf.attrs["units"]["Au"] == "ppm"  # not the default ppb
    with pytest.raises(DataError, match=r"column 'Au_unit'.*found \['ppb', 'ppm'\]"):
        _samples(tmp_path, "Au,Au_unit", "1,ppm", "2,ppb", "3,ppm")
    with pytest.raises(DataError, match="disagree"):
        _samples(tmp_path, "Au,Au_unit", "1,ppm", "2,ppm", "3,ppm", units={"Au": "ppb"})


def test_values_with_unit_text_must_carry_the_column_unit(tmp_path):
    gdf = _samples(tmp_path, "As", "1 ppm", "2ppm", "<0.5 ppm")
    np.testing.assert_allclose(gdf["As"], [1, 2, 0.25])
    with pytest.raises(DataError, match=r"column 'As': expected values in 'ppm'.*'2 ppb'"):
        _samples(tmp_path, "As", "1 ppm", "2 ppb", "3")


def test_mixed_type_columns_name_the_rows(tmp_path):
    with pytest.raises(DataError, match=r"column 'Cu'.*'2019-05-01'.*rows \[2\]"):
        _samples(tmp_path, "Cu", "1.5", "3", "2019-05-01")
    text = "x,y,As\n500000,abc,1\n500100,4000100,2\n"
    with pytest.raises(DataError, match=r"column 'y': expected numbers.*'abc'.*rows \[0\]"):
        gs.read_samples(_csv(tmp_path, text), crs=CRS)


def test_bom_and_whitespace_are_harmless(tmp_path):
    text = "\ufeffx , y ,  As\n500000, 4000000 ,  1.5 \n500100,4000100,\t2\n"
    gdf = gs.read_samples(_csv(tmp_path, text), crs=CRS)
    assert gdf["As"].tolist() == [1.5, 2.0] and gdf.geometry.x.iloc[0] == X0


def test_element_with_no_value_is_left_out_or_refused_when_asked_for(tmp_path):
    with pytest.warns(UserWarning, match=r"columns \['Cu'\] hold no value"):
        gdf = _samples(tmp_path, "As,Cu", "1,", "2,", "3,NA")
    assert gdf.attrs["elements"] == ["As"] and "Cu" not in gdf.columns
    with pytest.raises(DataError, match=r"columns \['Cu'\]: expected values, found none"):
        _samples(tmp_path, "As,Cu", "1,", "2,", "3,", elements=["As", "Cu"])


def test_element_headers_in_another_case_or_with_units_get_a_hint(tmp_path):
    with pytest.raises(InputFileError, match=r"rename 'AS' to 'As', 'Au_ppb' to 'Au' "
                                             r"\(units=\{'Au': 'ppb'\}\)"):
        _samples(tmp_path, "AS,Au_ppb", "1,2")


def test_file_not_in_utf8_names_the_encoding(tmp_path):
    p = _csv(tmp_path, "x,y,As,site\n500000,4000000,1,Caf\xe9\n", encoding="latin-1")
    with pytest.raises(InputFileError, match="encoding='latin-1'"):
        gs.read_samples(p, crs=CRS)
    assert gs.read_samples(p, crs=CRS, encoding="latin-1")["site"].iloc[0] == "Caf\xe9"


def test_gpkg_without_crs_is_refused(tmp_path):
    gdf = gpd.GeoDataFrame({"As": [1.0]}, geometry=gpd.points_from_xy([X0], [Y0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyogrio: 'crs' was not provided
        gdf.to_file(tmp_path / "s.gpkg")
    with pytest.raises(CRSError, match=r"s\.gpkg.*expected a CRS.*crs="):
        gs.read_samples(tmp_path / "s.gpkg")


def test_geology_with_no_polygon_or_lines_is_refused():
    empty = gpd.GeoDataFrame({"unit": ["A"]}, geometry=[shapely.Polygon()], crs=CRS)
    with pytest.raises(InputFileError, match="no non-empty geometry"):
        io.read_geology(empty)
    lines = gpd.GeoDataFrame({"unit": ["A"]}, crs=CRS,
                             geometry=[shapely.LineString([(X0, Y0), (X0 + 9, Y0)])])
    with pytest.raises(InputFileError, match=r"expected polygons, found \['LineString'\]"):
        io.read_geology(lines)


def test_faults_without_crs_are_refused():
    f = gpd.GeoDataFrame(geometry=[shapely.LineString([(X0, Y0), (X0 + 9, Y0)])])
    with pytest.raises(CRSError, match="faults: expected a CRS"):
        io.read_faults(f)


def test_dem_below_sea_level_and_at_zero_is_valid():
    dem = io.read_dem(_dem([[-120.0, 0.0], [-3.5, 12.0]]))
    np.testing.assert_array_equal(dem.values, [[-120.0, 0.0], [-3.5, 12.0]])


def test_dem_all_nodata_is_refused(tmp_path):
    dem = _dem(np.full((4, 4), -9999.0)).rio.write_nodata(-9999.0)
    dem.rio.to_raster(tmp_path / "dem.tif")
    with pytest.raises(DataError, match=r"dem\.tif.*nodata in all 16 cells"):
        io.read_dem(tmp_path / "dem.tif")


def test_dem_undeclared_nodata_is_masked_with_a_warning_and_odd_values_refused():
    with pytest.warns(UserWarning, match=r"1 cells hold \['-32768'\].*does not declare"):
        dem = io.read_dem(_dem([[-32768.0, 10.0], [11.0, 12.0]]))
    assert np.isnan(dem.values[0, 0])
    with pytest.raises(DataError, match=r"within -11000\.\.9000.*1 cells outside.*max 1e\+06"):
        io.read_dem(_dem([[1e6, 10.0], [11.0, 12.0]]))


def test_synthetic_samples_still_read_silently():
    region = gs.synthetic_region(seed=0, size_km=(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gdf = gs.read_samples(region.samples_sparse)
        gs.read_dem(region.dem)
        gs.read_geology(region.geology)
        gs.read_faults(region.faults)
    assert gdf[gdf.attrs["elements"]].notna().all().all()


def test_build_survey_with_geology_100_km_away_names_both_extents():
    region = gs.synthetic_region(seed=0, size_km=(3, 3))
    far = region.geology.translate(xoff=100_000.0)
    far = gpd.GeoDataFrame(region.geology.drop(columns="geometry"), geometry=far,
                           crs=region.geology.crs)
    with pytest.raises(GridError, match=r"geology: expected polygons overlapping the survey "
                                        r"grid, found none: geology bounds \(6"):
        gs.build_survey(region.samples_sparse, geology=far, method="idw")
