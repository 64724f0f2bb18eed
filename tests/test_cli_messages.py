"""Errors of the command line name its options, not the Python arguments the library's
messages name (``pass crs=...`` is ``--crs``), and the fix they name works."""

from __future__ import annotations

import inspect
import re
import warnings

import pytest

import geochem_sr as gs
from geochem_sr.cli import _as_options, main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A Python keyword argument (``crs=``) or call (``ds.rio.reproject(``, ``f(...,``).
PYTHON_FORM = re.compile(r"(?<![\w-])[a-z][a-z_]*=|\b(?:ds|gs|dem)\.[\w.]*\(|\w\(\.\.\.")


def _error(capsys, argv: list[str]) -> str:
    """The error line `geochem-sr` prints for ``argv`` (which must fail with status 2),
    checked free of Python forms."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"geochem-sr {argv[0]}: error: "), err
    assert not PYTHON_FORM.search(err), err
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small inputs as a user might have them: CSVs in metres and in lon/lat, a DEM and a
    geology layer without a CRS, geology whose unit column is not called 'unit'."""
    import rasterio

    root = tmp_path_factory.mktemp("inputs")
    r = gs.synthetic_region(seed=0, size_km=(3.2, 3.2))
    for name, gdf in (("sparse", r.samples_sparse), ("dense", r.samples_dense)):
        df = gdf.drop(columns="geometry")
        df.insert(0, "x", gdf.geometry.x.round(1))
        df.insert(1, "y", gdf.geometry.y.round(1))
        df.to_csv(root / f"{name}.csv", index=False)
    ll = r.samples_sparse.to_crs("EPSG:4326")
    df = ll.drop(columns="geometry")
    df.insert(0, "lon", ll.geometry.x.round(7))
    df.insert(1, "lat", ll.geometry.y.round(7))
    df.to_csv(root / "lonlat.csv", index=False)
    r.dem.rio.to_raster(root / "dem.tif")
    with rasterio.open(root / "dem.tif") as src:
        profile, band = src.profile, src.read()
    profile.pop("crs")
    with rasterio.open(root / "dem_no_crs.tif", "w", **profile) as dst:
        dst.write(band)
    r.geology.rename(columns={"unit": "LITHO"}).to_file(root / "geology_litho.gpkg")
    with warnings.catch_warnings():  # pyogrio: "'crs' was not provided" -- the point
        warnings.simplefilter("ignore", UserWarning)
        r.geology.set_crs(None, allow_override=True).to_file(root / "geology_no_crs.gpkg")
    return root


def test_csv_without_crs_asks_for_the_option(files, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    err = _error(capsys, ["build", str(out), "--sparse", str(files / "sparse.csv")])
    assert "--crs EPSG:" in err and "'x', 'y'" in err
    assert not out.exists()


def test_geology_unit_column_is_named_as_the_option(files, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    base = ["build", str(out), "--sparse", str(files / "sparse.csv"), "--crs", "EPSG:32650",
            "--method", "idw", "--geology", str(files / "geology_litho.gpkg")]
    err = _error(capsys, base)
    assert "--unit-column" in err and "'LITHO'" in err
    assert main([*base, "--unit-column", "LITHO"]) == 0  # the fix it names works
    assert "lithology" in gs.open_survey(out)


def test_files_without_crs_are_not_sent_to_crs(files, tmp_path, capsys):
    """--crs reaches the samples only: a DEM or geology layer without a CRS is told the
    GDAL command that gives it one, and that command works."""
    import subprocess
    from shutil import which

    out = tmp_path / "s.zarr"
    base = ["build", str(out), "--sparse", str(files / "sparse.csv"), "--crs", "EPSG:32650",
            "--method", "idw"]
    err = _error(capsys, [*base, "--dem", str(files / "dem_no_crs.tif")])
    assert "gdal_translate -a_srs EPSG:" in err and "pass --crs" not in err
    err = _error(capsys, [*base, "--geology", str(files / "geology_no_crs.gpkg")])
    assert "ogr2ogr -a_srs EPSG:" in err and "pass --crs" not in err
    if which("gdal_translate") is None:
        return
    fixed = tmp_path / "dem_with_crs.tif"
    subprocess.run(["gdal_translate", "-q", "-a_srs", "EPSG:32650",
                    str(files / "dem_no_crs.tif"), str(fixed)], check=True)
    assert main([*base, "--dem", str(fixed)]) == 0


def test_lon_lat_samples_get_a_grid_crs(files, tmp_path, capsys):
    out = tmp_path / "s.zarr"
    base = ["build", str(out), "--sparse", str(files / "lonlat.csv"), "--method", "idw"]
    err = _error(capsys, base)
    assert "--grid-crs EPSG:" in err
    assert main([*base, "--grid-crs", "EPSG:32650"]) == 0
    assert gs.open_survey(out).rio.crs.to_epsg() == 32650


@pytest.fixture(scope="module")
def small_survey(files):
    out = files / "small.zarr"
    assert main(["build", str(out), "--sparse", str(files / "sparse.csv"), "--dense",
                 str(files / "dense.csv"), "--crs", "EPSG:32650", "--method", "idw"]) == 0
    return out


def test_too_small_a_survey_to_train_names_what_to_change(small_survey, tmp_path, capsys):
    err = _error(capsys, ["train", str(small_survey), "--model-out", str(tmp_path / "m.pt"),
                          "--network", "srcnn", "--epochs", "1"])
    assert "--cell-size" in err and "block_size" not in err


def test_export_options_are_named(small_survey, tmp_path, capsys):
    err = _error(capsys, ["export", str(small_survey), str(tmp_path), "--variables", "lr",
                          "--clip-to-aoa"])
    assert "--clip-to-aoa: the dataset has no 'aoa'" in err
    assert main(["export", str(small_survey), str(tmp_path), "--variables", "lr"]) == 0
    capsys.readouterr()
    err = _error(capsys, ["export", str(small_survey), str(tmp_path), "--variables", "lr"])
    assert "pass --overwrite" in err


def test_predict_passes_reembed(monkeypatch, tmp_path, capsys):
    """The option the geology-vocabulary message names reaches the prediction."""
    import geochem_sr.inference

    seen = {}
    monkeypatch.setattr(geochem_sr.inference, "predict_to_zarr",
                        lambda *args, **kwargs: seen.update(kwargs) or args[1])
    assert main(["predict", "s.zarr", str(tmp_path / "p.zarr"), "--model", "m.pt",
                 "--reembed"]) == 0
    assert seen["reembed"] is True


@pytest.mark.parametrize("module, phrase, library, cli", [
    ("geochem_sr.training.checkpoint", "pass resume=False to start afresh or another checkpoint",
     "checkpoint 'ck.pt': written by a different training set-up (model: 'srcnn' there, "
     "'unet' now); pass resume=False to start afresh or another checkpoint path",
     "; delete it to start afresh, or pass another --checkpoint"),
    ("geochem_sr.models.compatibility", "gs.super_resolve(..., reembed=True)",
     "geology_vocabulary: the dataset's geology embedding differs from the one the model was "
     "trained with; re-embed with ds.geosr.embed_geology(vocabulary=model vocabulary) or "
     "gs.super_resolve(..., reembed=True)",
     "; pass --reembed to embed"),
    ("geochem_sr.io.values", "declare it (read_samples(units={{{name!r}: ...}}))",
     "samples file 's.csv': column 'As': expected values in 'ppm', found ['12 ppb'] in row "
     "[0]; convert them to one unit and declare it (read_samples(units={'As': ...}))",
     "(with a column As_unit in the file holding the unit)"),
    ("geochem_sr.io.values", "(pass units={{{name!r}: 'ppm'}})",
     "column 'As': expected a unit in ['%', 'ppb', 'ppm'], found 'kg' "
     "(pass units={'As': 'ppm'})",
     "(with a column As_unit in the file holding ppm)"),
    ("geochem_sr.covariates.terrain", "max_coarsening=...) to accept it",
     "DEM: cells of about 250 x 250 m are 5 times the grid's 50 x 50 m cells (at most 4): "
     "elevation, slope and aspect would be interpolated from too few DEM cells; use a finer "
     "DEM, a cell_size of at least 62.5 m, or terrain_from_dem(..., max_coarsening=...) to "
     "accept it",
     "use a finer DEM or a coarser grid: --cell-size 62.5 or more"),
    ("geochem_sr.io.vectors", "(faults go to faults=, not geology=)",
     "geology file 'f.gpkg': expected polygons, found ['LineString'] geometries (faults go "
     "to faults=, not geology=)",
     "(faults go to --faults, not --geology)"),
])
def test_messages_that_need_a_model_or_odd_files(module, phrase, library, cli):
    """Messages too slow or fiddly to provoke here, as the command line shows them; the
    library's source must still say ``phrase``, so a reworded message shows up here."""
    import importlib

    source = inspect.getsource(importlib.import_module(module))
    joined = re.sub(r"\"\s*f?\"", "", " ".join(source.split()))  # "a " "b" -> "a b"
    assert phrase in joined, phrase
    message = _as_options(library)
    assert cli in message, message
    assert not PYTHON_FORM.search(message), message
