"""Trust: do-no-harm shrinkage, calibrated uncertainty, spatial cross-validation, AOA."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.errors import DataError, ModelMismatchError, ParameterError, SchemaError
from geochem_sr.inference import applicability, calibrated_std
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import BlockSplitter
from geochem_sr.training import train
from geochem_sr.trust import (
    COVERAGE_1STD,
    RolesSplitter,
    calibrate,
    cross_validate,
    default_blocks,
    training_roles,
    trust_report,
)

N = 96  # cells per side of the test regions
TINY = {"network_kwargs": {"features": 8}, "patch_size": 16, "stride": 8, "loss": "mse",
        "learning_rate": 3e-3}


def _field(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    a = ndimage.gaussian_filter(rng.normal(size=(n, n)), sigma, mode="wrap")
    return (a - a.mean()) / a.std()


def make_case(kind: str, seed: int = 0, n: int = N, noise: float = 0.1) -> xr.Dataset:
    """A survey whose residual log10(hr / lr) is learnable from terrain, or pure noise.

    ``learnable``: 0.3 tanh(local relief) (+ iid noise), the local relief being the
    elevation minus its 3-cell Gaussian smooth, a function of the elevation channel and its
    neighbours. ``noise``: a spatially correlated random field (2-cell Gaussian smoothing),
    drawn independently of every input. Lithology: units 0 and 1 of a legend of three.
    """
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + n * 50, 4000000 + n * 50), 50.0,
                         "EPSG:32650")
    elev = 3000 + 150 * _field(rng, n, 8) + 40 * _field(rng, n, 2)
    gy, gx = np.gradient(elev, 50.0)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    aspect = (np.degrees(np.arctan2(-gx, gy)) + 360) % 360
    lith = (_field(rng, n, 10) > 0).astype("int16")
    local = elev - ndimage.gaussian_filter(elev, 3)
    local = (local - local.mean()) / local.std()
    loglr = np.stack([np.log10(5.0) + 0.3 * _field(rng, n, 8) for _ in range(2)])
    if kind == "learnable":
        t = np.stack([0.3 * np.tanh(local), -0.3 * np.tanh(local)])
        t = t + noise * rng.normal(size=t.shape)
    else:
        t = np.stack([0.2 * _field(rng, n, 2) for _ in range(2)])
    d2, d3 = (schema.Y, schema.X), (schema.ELEMENT, schema.Y, schema.X)
    ds = g.assign(
        lr=(d3, (10**loglr).astype("float32")),
        hr=(d3, (10 ** (loglr + t)).astype("float32")),
        elevation=(d2, elev.astype("float32")),
        slope=(d2, slope.astype("float32")),
        aspect=(d2, aspect.astype("float32")),
        lithology=(d2, lith, {"flag_values": [0, 1, 2],
                              "flag_meanings": "granite schist marble"}),
    )
    return ds.assign_coords({schema.ELEMENT: ["As", "Cu"],
                             schema.ELEMENT_UNITS: (schema.ELEMENT, ["ppm", "ppm"])})


def _train(ds: xr.Dataset, epochs: int) -> GeoSRModel:
    return train(ds, "srcnn", "geochem+terrain", epochs=epochs, patience=None,
                 splitter=BlockSplitter(16, seed=0), seed=0, progress=False, **TINY)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Train on one thread: two OpenMP threads on a shared, loaded 2-core machine ran 10x
    slower (they wait for each other); restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def noise_case() -> tuple[xr.Dataset, GeoSRModel]:
    ds = make_case("noise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ds, _train(ds, 20)


@pytest.fixture(scope="module")
def learnable_case() -> tuple[xr.Dataset, GeoSRModel, GeoSRModel]:
    ds = make_case("learnable")
    model = _train(ds, 30)
    return ds, model, calibrate(ds, model)


# --------------------------------------------------------------------------- blocks
def test_default_blocks_exceed_context_plus_gap() -> None:
    for rf, patch in ((157, 32), (13, 32), (41, 16)):
        block, gap = default_blocks(rf, patch)
        context = min(rf, patch)
        assert gap >= context / 2
        assert block >= context + 2 * gap and block >= 2 * patch


def test_roles_splitter_returns_its_roles_and_rejects_bad_codes() -> None:
    ds = make_case("noise", n=32)
    codes = np.zeros((32, 32), np.int8)
    codes[:, :20], codes[:, 24:] = 1, 2
    roles = xr.DataArray(codes, dims=(schema.Y, schema.X),
                         coords={schema.Y: ds.y, schema.X: ds.x})
    sp = RolesSplitter(roles)
    np.testing.assert_array_equal(sp.split(ds).values, codes)
    assert sp.fractions == pytest.approx((20 / 28, 8 / 28, 0.0))
    with pytest.raises(SchemaError, match="codes"):
        RolesSplitter(roles.copy(data=codes * 3))
    with pytest.raises(DataError, match="training cells"):
        RolesSplitter(roles.copy(data=np.zeros_like(codes)))


# --------------------------------------------------------------------------- do no harm
def test_noise_residual_is_shrunk_to_zero_and_output_is_the_sparse_map(noise_case) -> None:
    from geochem_sr.inference import super_resolve

    ds, model = noise_case
    raw = super_resolve(ds, model, uncertainty=False).compute()
    # the network does predict something: without shrinkage the output is not the sparse map
    assert float(np.nanmax(np.abs(raw[schema.RESIDUAL_PRED].values))) > 0.02
    with pytest.warns(UserWarning, match="returned as the sparse map"):
        cal = calibrate(ds, model)
    for el in model.elements:
        assert cal.shrinkage[el] <= 0.1
        assert el in cal.validation["shrunk_to_zero"]
        assert cal.validation["per_element"][el]["gain"] >= -1e-9  # never worse on test
    pred = super_resolve(ds, cal).compute()
    lr = ds[schema.LR].sel({schema.ELEMENT: model.elements}).values
    np.testing.assert_allclose(pred[schema.HR_PRED].values, lr, rtol=1e-6)
    assert pred.attrs["geochem_sr_shrinkage"] == {el: 0.0 for el in model.elements}
    for el in model.elements:  # the verdict travels with the map, in words
        assert pred.attrs["geochem_sr_verdicts"][el].startswith("returned as the sparse map")


def test_learnable_residual_keeps_its_shrinkage_and_gains(learnable_case) -> None:
    ds, model, cal = learnable_case
    assert not cal.validation["shrunk_to_zero"]
    for el in model.elements:
        r = cal.validation["per_element"][el]
        assert cal.shrinkage[el] >= 0.8
        assert r["gain"] > 0.25  # measured on test blocks
        assert r["rmse_pred"] < r["rmse_lr"]
    assert model.shrinkage == {}  # calibrate returns a copy


def test_calibrated_coverage_on_test_blocks(learnable_case) -> None:
    ds, model, cal = learnable_case
    for el in model.elements:
        r = cal.validation["per_element"][el]
        assert r["coverage_1std_val"] == pytest.approx(COVERAGE_1STD, abs=0.01)
        assert 0.60 <= r["coverage_1std"] <= 0.75
        assert 0.85 <= r["coverage_2std"] <= 0.99
        assert cal.std_scale[el] > 0 and cal.prediction.std_floor[el] > 0
    text = cal.summary()
    for el in model.elements:
        assert f"{cal.validation['per_element'][el]['coverage_1std']:.2f}" in text
        assert f"{el}: correction kept at {cal.shrinkage[el]:.2f}" in text
        assert cal.verdict_of(el) in text and "independent validation blocks" in text


def test_calibrated_std_reproduces_the_measured_coverage(learnable_case) -> None:
    """The public formula, applied to a whole-map prediction, gives the reported coverage."""
    import dask.array as dsa

    from geochem_sr.features import stack_inputs, target_residual
    from geochem_sr.inference import predict_array

    ds, model, cal = learnable_case
    x = stack_inputs(ds, model.channels, model.norm_stats).values
    raw = dataclasses.replace(cal, shrinkage={}, std_scale={}, prediction=dataclasses.replace(
        cal.prediction, std_floor=None))  # the network alone
    r, spread = predict_array(raw, x, tta=True)
    t = target_residual(ds, model.elements).values
    std = calibrated_std(spread, cal)
    lazy = calibrated_std(dsa.from_array(spread, chunks=(2, 40, 40)), cal)
    np.testing.assert_array_equal(lazy.compute(), std)
    test = training_roles(ds, model).values == 3
    for k, el in enumerate(model.elements):
        s = cal.shrinkage[el]
        floor = cal.prediction.std_floor[el]
        assert np.all(std[k] >= cal.std_scale[el] * floor * (1 - 1e-6))
        ok = test & np.isfinite(t[k]) & np.isfinite(r[k])
        cover = np.mean(np.abs(t[k] - s * r[k])[ok] <= std[k][ok])
        assert cover == pytest.approx(cal.validation["per_element"][el]["coverage_1std"],
                                      abs=0.01)
    with pytest.raises(ModelMismatchError, match="calibrated"):
        calibrated_std(spread, model)


def test_calibrated_model_round_trips_through_the_model_file(learnable_case, tmp_path) -> None:
    ds, model, cal = learnable_case
    back = GeoSRModel.load(cal.save(tmp_path / "m.pt"))
    assert back.shrinkage == cal.shrinkage and back.std_scale == cal.std_scale
    assert back.validation["per_element"] == json.loads(json.dumps(cal.validation))[
        "per_element"]
    assert back.aoa["threshold"] == cal.aoa["threshold"]


def test_calibration_is_deterministic_and_checks_the_roles(learnable_case) -> None:
    ds, model, cal = learnable_case
    again = calibrate(ds, model)
    assert again.shrinkage == cal.shrinkage and again.std_scale == cal.std_scale
    assert again.aoa == cal.aoa
    roles = training_roles(ds, model)
    assert dict(zip(*np.unique(roles.values, return_counts=True), strict=True))[2] == \
        model.training.split["cells"]["val"]
    with pytest.raises(ModelMismatchError, match="seed"):
        calibrate(ds, model, seed=12345)
    other = dataclasses.replace(model, training=dataclasses.replace(model.training, split={
        **model.training.split, "block_size_cells": [24, 24]}))
    with pytest.raises(ModelMismatchError, match="recorded"):
        calibrate(ds, other)


def test_trust_report_table(learnable_case) -> None:
    ds, model, cal = learnable_case
    df = trust_report(ds, cal)
    assert list(df.index) == model.elements
    for el in model.elements:
        assert df.loc[el, "gain"] == cal.validation["per_element"][el]["gain"]
        assert df.loc[el, "shrinkage"] == cal.shrinkage[el]
        assert not df.loc[el, "returned_as_sparse"]
    assert 0.9 <= df.attrs["aoa_fraction"] <= 1.0
    with pytest.raises(ModelMismatchError, match="calibrated"):
        trust_report(ds, model)


# --------------------------------------------------------------------------- cross-validation
def test_cross_validated_gain_is_positive_for_a_learnable_residual() -> None:
    ds = make_case("learnable", seed=1)
    rep = cross_validate(ds, "srcnn", "geochem+terrain", folds=3, block_size=24, gap=2,
                         epochs=10, seed=0,
                         **{k: v for k, v in TINY.items() if k != "learning_rate"})
    assert len(rep.per_fold) == 3 * 2
    assert set(rep.per_fold["fold"]) == {0, 1, 2}
    for el in ("As", "Cu"):
        row = rep.per_element.loc[el]
        assert row["gain"] > 0.05
        assert row["rmse_pred"] < row["rmse_lr"]
        assert row["psnr_pred"] > row["psnr_lr"]
        assert row["gain"] == pytest.approx(1 - row["ratio"])
    json.dumps(rep.to_dict())  # serializable
    assert "gain" in str(rep)
    fold = rep.oof["fold"].values
    assert set(np.unique(fold)) <= {-1, 0, 1, 2} and (fold >= 0).mean() > 0.9
    s = rep.fit_shrinkage()
    assert all(0.5 <= v <= 1 for v in s.values())
    attached = rep.attach(GeoSRModel("srcnn", {}, {}, "geochem", ["lr:As"], ["As"], {}, {}))
    assert attached.validation["cross_validation"]["settings"]["folds"] == 3


def test_cross_validation_refuses_its_own_splitter() -> None:
    ds = make_case("noise", n=48)
    with pytest.raises(ParameterError, match="splitter"):
        cross_validate(ds, "srcnn", "geochem", splitter=BlockSplitter(16))


def test_cross_validation_checks_the_training_settings_before_any_fold(monkeypatch) -> None:
    import geochem_sr.training as training

    def no_training(*args, **kwargs):
        raise AssertionError("train() called")

    monkeypatch.setattr(training, "train", no_training)
    ds = make_case("noise", n=48)
    with pytest.raises(ParameterError, match="patch_size"):
        cross_validate(ds, "srcnn", "geochem", patch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        cross_validate(ds, "srcnn", "geochem", patch_sise=16)
    with pytest.warns(DeprecationWarning, match="model_kwargs"), \
            pytest.raises(AssertionError, match="train"):  # the old name is resolved
        cross_validate(ds, "srcnn", "geochem", folds=3, block_size=12, gap=0,
                       model_kwargs={"features": 8}, patch_size=8, stride=4)


# --------------------------------------------------------------------------- applicability
def test_unseen_lithology_is_outside_the_area_of_applicability(learnable_case) -> None:
    ds, model, cal = learnable_case
    assert cal.aoa["lithology_seen"] == ["granite", "schist"]
    lith = ds[schema.LITHOLOGY].values.copy()
    lith[10:30, 40:60] = 2  # marble: never seen in training
    app = applicability(ds.assign({schema.LITHOLOGY: ds[schema.LITHOLOGY].copy(data=lith)}),
                        cal)
    flag = app[schema.AOA].values
    assert app[schema.AOA].dtype == bool and app[schema.DISSIMILARITY].dtype == np.float32
    assert not flag[10:30, 40:60].any()
    assert flag[lith != 2].mean() > 0.9


def test_inputs_far_outside_training_are_outside(learnable_case) -> None:
    ds, model, cal = learnable_case
    elev = ds[schema.ELEVATION].values.copy()
    elev[50, 50] += 5000.0  # 5 km above anything trained on
    lr = ds[schema.LR].values.copy()
    lr[:, 70, 20] *= 1e4  # concentrations four orders of magnitude above
    lr[0, 80, 80] = np.nan  # a missing input
    ds2 = ds.assign({schema.ELEVATION: ds[schema.ELEVATION].copy(data=elev),
                     schema.LR: ds[schema.LR].copy(data=lr)})
    app = applicability(ds2, cal)
    di, flag = app[schema.DISSIMILARITY].values, app[schema.AOA].values
    thr = cal.aoa["threshold"]
    for r, c in ((50, 50), (70, 20)):
        assert di[r, c] > 3 * thr and not flag[r, c]
    assert np.isnan(di[80, 80]) and not flag[80, 80]
    assert app.rio.crs == ds.rio.crs


def test_applicability_numpy_equals_dask(learnable_case) -> None:
    ds, model, cal = learnable_case
    lith = ds[schema.LITHOLOGY].values.copy()
    lith[60:70, 5:25] = 2
    ds2 = ds.assign({schema.LITHOLOGY: ds[schema.LITHOLOGY].copy(data=lith)})
    eager = applicability(ds2, cal)
    lazy = applicability(ds2.chunk({schema.Y: 40, schema.X: 50}), cal)
    assert lazy[schema.DISSIMILARITY].chunks is not None  # nothing computed yet
    lazy = lazy.compute()
    np.testing.assert_array_equal(lazy[schema.DISSIMILARITY].values,
                                  eager[schema.DISSIMILARITY].values)
    np.testing.assert_array_equal(lazy[schema.AOA].values, eager[schema.AOA].values)


def test_applicability_needs_a_reference(learnable_case) -> None:
    ds, model, _ = learnable_case
    with pytest.raises(ModelMismatchError, match="calibrate"):
        applicability(ds, model)
