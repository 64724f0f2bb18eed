"""The command line on a user's own files: CSV samples, a GeoTIFF DEM, a GeoPackage of
geology that covers only part of the grid, and fault lines — build, train, predict,
evaluate, as the README's CLI section shows them."""

from __future__ import annotations

import numpy as np
import pytest

import geochem_sr as gs
from geochem_sr import schema
from geochem_sr.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Files written the way a user's own would be: coordinates named Easting/Northing,
    censored values as text, geology over the western 70 % of the area only."""
    root = tmp_path_factory.mktemp("user")
    r = gs.synthetic_region(seed=0, size_km=(6.4, 6.4))
    for name, gdf in (("sparse", r.samples_sparse), ("dense", r.samples_dense)):
        df = gdf.drop(columns="geometry").astype(object)
        df.insert(0, "Easting", gdf.geometry.x.round(1))
        df.insert(1, "Northing", gdf.geometry.y.round(1))
        df.loc[df.index[:5], "Au"] = "<0.5"
        df.to_csv(root / f"{name}.csv", index=False)
    r.dem.rio.to_raster(root / "dem.tif")
    xmin, ymin, xmax, ymax = r.bounds
    r.geology.clip((xmin, ymin, xmin + 0.7 * (xmax - xmin), ymax)).to_file(
        root / "geology.gpkg")
    r.faults.to_file(root / "faults.gpkg")
    return root


@pytest.fixture(scope="module")
def built(files):
    out = files / "survey.zarr"
    rc = main(["build", str(out), "--sparse", str(files / "sparse.csv"),
               "--dense", str(files / "dense.csv"), "--crs", "EPSG:32650",
               "--dem", str(files / "dem.tif"), "--geology", str(files / "geology.gpkg"),
               "--faults", str(files / "faults.gpkg"), "--cell-size", "50",
               "--method", "idw"])
    assert rc == 0
    return out


def test_build_keeps_lithology_and_validates(built):
    ds = gs.open_survey(built)
    gs.validate(ds)
    lith = ds[schema.LITHOLOGY]
    assert lith.dtype == np.int16
    no_unit = (lith.values == -1).mean()
    assert 0.2 < no_unit < 0.4  # the geology covers the western 70 %


def test_build_refuses_to_overwrite(built, files, capsys):
    before = sorted(p.name for p in built.iterdir())
    rc = main(["build", str(built), "--sparse", str(files / "sparse.csv"), "--crs",
               "EPSG:32650"])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in built.iterdir()) == before


def test_build_records_the_censoring_policy_it_was_given(built, files, tmp_path):
    assert gs.open_survey(built).attrs[schema.ATTR_CENSORING] == "half"  # the default
    out = tmp_path / "dl.zarr"
    assert main(["build", str(out), "--sparse", str(files / "sparse.csv"), "--crs",
                 "EPSG:32650", "--censored", "dl", "--method", "idw"]) == 0
    assert gs.open_survey(out).attrs[schema.ATTR_CENSORING] == "dl"


def test_train_predict_evaluate_on_partial_geology(built, files, capsys):
    model = files / "model.pt"
    assert main(["train", str(built), "--model-out", str(model), "--network", "srcnn",
                 "--epochs", "2"]) == 0  # calibrated: crashed on the NaN lithology before
    assert "wrote" in capsys.readouterr().out
    pred = files / "prediction.zarr"
    assert main(["predict", str(built), str(pred), "--model", str(model), "--tile", "64"]) == 0
    p, s = gs.open_survey(pred), gs.open_survey(built)
    no_unit = s[schema.LITHOLOGY].values == -1
    hr_pred, lr = p[schema.HR_PRED].values, s[schema.LR].values
    # no holes: every cell with a sparse value has a prediction ...
    np.testing.assert_array_equal(np.isnan(hr_pred), np.isnan(lr))
    # ... and a cell with no mapped unit keeps the sparse map, outside the AOA
    np.testing.assert_array_equal(hr_pred[:, no_unit], lr[:, no_unit])
    assert not p[schema.AOA].values[no_unit].any()
    assert p[schema.AOA].values[~no_unit].mean() > 0.5
    assert main(["evaluate", str(pred), "--survey", str(built)]) == 0
    whole = capsys.readouterr().out
    assert "whole area" in whole and "sparse map" in whole and "gain" in whole
    assert main(["evaluate", str(pred), "--survey", str(built), "--model", str(model)]) == 0
    held = capsys.readouterr().out
    assert "the model's held-out test blocks" in held and "rmse_log10" in held
    _exports_cloud_optimized_geotiffs(pred, files, p, capsys)
    for store in (built, pred):
        _every_layer_lands_where_it_belongs(store)


def _every_layer_lands_where_it_belongs(store):
    """Each gridded variable of a store, opened by GDAL as a GIS would: rasterio's GDAL
    reads the CRS and the grid's corners; Debian's gdal-bin 3.6 (where installed), which
    swaps the CRS axes of Zarr arrays carrying GDAL's `_CRS`, places the same corners and
    claims no CRS it would misapply."""
    import json
    import shutil
    import subprocess

    import rasterio

    ds = gs.open_survey(store)
    dx = float(ds.x[1] - ds.x[0])
    left, top = float(ds.x[0]) - dx / 2, float(ds.y[0]) + dx / 2
    gridded = [v for v in ds.data_vars if {schema.X, schema.Y} <= set(ds[v].dims)]
    assert gridded
    for v in gridded:
        band = ":0" if ds[v].ndim == 3 else ""
        with rasterio.open(f'ZARR:"{store}":/{v}') as src:
            assert src.crs == ds.rio.crs, v
            assert (src.bounds.left, src.bounds.top) == pytest.approx((left, top)), v
        if shutil.which("gdalinfo") is None:
            continue
        info = json.loads(subprocess.run(
            ["gdalinfo", "-json", f'ZARR:"{store}":/{v}{band}'], check=True,
            capture_output=True, text=True).stdout)
        ul = info["cornerCoordinates"]["upperLeft"]
        assert ul == pytest.approx([left, top]), v
        if "wgs84Extent" in info:  # a CRS it applies: then it must place the map right
            from pyproj import Transformer

            lon, lat = Transformer.from_crs(ds.rio.crs, "EPSG:4326",
                                            always_xy=True).transform(left, top)
            assert info["wgs84Extent"]["coordinates"][0][0] == pytest.approx([lon, lat],
                                                                             abs=1e-6), v


def _gdal_bin_upper_left(path) -> tuple[float, float] | None:
    """Upper-left corner (lon, lat) as Debian's gdal-bin reports it (None without it)."""
    import json
    import shutil
    import subprocess

    if shutil.which("gdalinfo") is None:
        return None
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], check=True,
                                     capture_output=True, text=True).stdout)
    lon, lat = info["wgs84Extent"]["coordinates"][0][0]
    return lon, lat


def _exports_cloud_optimized_geotiffs(pred, files, p, capsys):
    """`geochem-sr export`: one COG per variable, one named band per element with its unit,
    NaN nodata, overviews, placed where the grid is — read by rasterio's GDAL and, where it
    is installed, by Debian's gdal-bin (GDAL 3.6)."""
    import rasterio
    from pyproj import Transformer

    out = files / "gis"
    assert main(["export", str(pred), str(out), "--clip-to-aoa"]) == 0
    written = sorted(f.name for f in out.glob("*.tif"))
    assert written == ["aoa.tif", "dissimilarity.tif", "hr_pred.tif", "hr_pred_std.tif"]
    assert "wrote" in capsys.readouterr().out
    units = [str(u) for u in p[schema.ELEMENT_UNITS].values]
    elements = [str(e) for e in p[schema.ELEMENT].values]
    dx = float(p.x[1] - p.x[0])
    with rasterio.open(out / "hr_pred.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.count == len(elements) and src.crs == p.rio.crs
        assert list(src.descriptions) == [f"{e} ({u})" for e, u in zip(elements, units,
                                                                         strict=True)]
        assert np.isnan(src.nodata) and src.overviews(1)
        left, top = src.bounds.left, src.bounds.top
        assert left == pytest.approx(float(p.x[0]) - dx / 2)
        assert top == pytest.approx(float(p.y[0]) + dx / 2)
        band = src.read(1)
    inside = p[schema.AOA].values.astype(bool)
    np.testing.assert_allclose(band[inside], p[schema.HR_PRED].values[0][inside], rtol=1e-6)
    assert np.isnan(band[~inside]).all()  # clipped to the area of applicability
    lon, lat = Transformer.from_crs(p.rio.crs, "EPSG:4326", always_xy=True).transform(left, top)
    for name in ("hr_pred.tif", "aoa.tif"):
        corner = _gdal_bin_upper_left(out / name)
        if corner is not None:  # Debian's GDAL 3.6 places it where pyproj does
            assert corner == pytest.approx((lon, lat), abs=1e-6)
    assert main(["export", str(pred), str(out)]) == 2  # exists: refused, files kept
    assert "--overwrite" in capsys.readouterr().err
