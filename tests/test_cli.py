"""The command line, end to end on a small synthetic region (real Zarr, real GDAL)."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio

import geochem_sr as gs
from geochem_sr.cli import build_parser, main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--out", str(out), "--size-km", "6.4", "--epochs", "1",
               "--network", "srcnn"])
    assert rc == 0
    return out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for cmd in ("demo", "build", "train", "predict", "evaluate", "experiment"):
        assert cmd in text


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "geochem_sr.cli", "predict", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--scheduler" in res.stdout and "--tile" in res.stdout


def test_build_synthetic_opens_in_gdal(tmp_path):
    out = tmp_path / "s.zarr"
    assert main(["build", str(out), "--synthetic", "--size-km", "3.2", "--method", "idw"]) == 0
    ds = gs.open_survey(out)
    assert {"lr", "hr", "slope", "aspect", "geology_embedding"} <= set(ds.data_vars)
    with rasterio.open(f'ZARR:"{out}":/lr') as src:
        assert src.crs == ds.rio.crs
        assert src.transform == ds.rio.transform()
        assert src.count == ds.sizes["element"]


def test_build_without_samples_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    assert main(["build", str(out)]) == 2
    assert "--sparse" in capsys.readouterr().err
    assert not out.exists()


def test_demo_writes_everything(demo_dir):
    for name in ("survey.zarr", "model.pt", "prediction.zarr", "comparison.png", "scores.csv"):
        assert (demo_dir / name).exists(), name
    pred = gs.open_survey(demo_dir / "prediction.zarr")
    assert "hr_pred" in pred and pred.rio.crs is not None
    # a calibrated model brings its area of applicability into the output store
    assert {"aoa", "dissimilarity", "hr_pred_std"} <= set(pred.data_vars)
    assert pred.aoa.dtype == bool and 0.5 < float(pred.aoa.mean()) <= 1.0
    with rasterio.open(f'ZARR:"{demo_dir / "prediction.zarr"}":/hr_pred') as src:
        assert src.crs == pred.rio.crs


def test_lazy_super_resolve_equals_store(demo_dir):
    ds = gs.open_survey(demo_dir / "survey.zarr")
    model = gs.GeoSRModel.load(demo_dir / "model.pt")
    lazy = ds.geosr.super_resolve(model, tile=64)
    stored = gs.open_survey(demo_dir / "prediction.zarr")
    for name in ("hr_pred", "hr_pred_std", "aoa"):
        np.testing.assert_allclose(lazy[name].values, stored[name].values, rtol=1e-5)
    # hr_pred_std follows the calibration rule of inference.calibrated_std
    from geochem_sr.inference import calibrated_std

    raw = ds.geosr.super_resolve(model.__class__(**{**model.__dict__, "std_scale": {}}),
                                 tile=64).hr_pred_std
    np.testing.assert_allclose(lazy.hr_pred_std.values,
                               np.asarray(calibrated_std(raw.values, model)), rtol=1e-5)


def test_train_predict_evaluate_commands(demo_dir, tmp_path, capsys):
    model = tmp_path / "m.pt"
    survey = demo_dir / "survey.zarr"
    assert main(["train", str(survey), "--model-out", str(model), "--network", "srcnn",
                 "--epochs", "1", "--no-calibrate"]) == 0
    assert "GeoSRModel srcnn" in capsys.readouterr().out
    pred = tmp_path / "p.zarr"
    assert main(["predict", str(survey), str(pred), "--model", str(model), "--tile", "64",
                 "--no-uncertainty"]) == 0
    assert main(["evaluate", str(pred), "--survey", str(survey)]) == 0
    assert "psnr_avg" in capsys.readouterr().out


def test_train_auto_then_predict_in_zarr(demo_dir, tmp_path, capsys):
    """The CLI's auto: narrow multi-level U-Nets (1 epoch), trees and ridge (pairs, for the
    members' spread) compared per element, the selection calibrated, written, and
    predicted into a Zarr store with its std."""
    import warnings

    model = tmp_path / "auto.pt"
    survey = demo_dir / "survey.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["train", str(survey), "--model-out", str(model), "--network", "auto",
                     "--epochs", "1", "--base-channels", "4", "--inputs", "geochem+terrain",
                     "--ensemble", "2", "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert "GeoSRModel selection" in out and "method per element" in out
    back = gs.GeoSRModel.load(model)
    assert set(back.notes["selection"]) == set(back.elements)
    pred = tmp_path / "p.zarr"
    assert main(["predict", str(survey), str(pred), "--model", str(model), "--tile", "64"]) == 0
    ds = gs.open_survey(pred)
    assert "hr_pred_std" in ds and np.isfinite(ds["hr_pred"].values).any()


def test_predict_with_bad_model_file(demo_dir, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    out = tmp_path / "p.zarr"
    assert main(["predict", str(demo_dir / "survey.zarr"), str(out), "--model", str(bad)]) == 2
    assert "model file" in capsys.readouterr().err
    assert not out.exists()


def test_every_option_says_what_it_does_and_its_default():
    """`--help` of every command: each option has a help text, and each option with a
    default shows it (argparse's ArgumentDefaultsHelpFormatter)."""
    import argparse

    from geochem_sr.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, cmd in sub.choices.items():
        text = cmd.format_help()
        for action in cmd._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings}: no help text"
            if action.default not in (None, argparse.SUPPRESS, False):
                assert f"(default: {action.default})" in " ".join(text.split()), (
                    name, action.option_strings)
