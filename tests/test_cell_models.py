"""Per-cell regressors (LightGBM trees, ridge) as model kinds: fitted on the training blocks,
stored in a model file, calibrated and super-resolved like the networks."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import ndimage

import geochem_sr as gs
from geochem_sr import schema
from geochem_sr.errors import ParameterError
from geochem_sr.models import GeoSRModel, get_model
from geochem_sr.models.cell_features import MultiScale

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def planted_survey(n: int = 112, seed: int = 0) -> xr.Dataset:
    """A survey whose As residual is a function of the terrain (learnable per cell) and
    whose Cu residual is independent noise (nothing to learn)."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + n * 50, 4000000 + n * 50), 50.0,
                         "EPSG:32650")
    elev = ndimage.gaussian_filter(rng.normal(0, 1, (n, n)), 4)
    elev = (elev / elev.std() * 80 + 1500).astype("float32")
    bump = np.tanh((elev - 1500) / 60)
    lr = 10 ** ndimage.gaussian_filter(rng.normal(0, 0.3, (2, n, n)), 6)
    t_as = 0.25 * bump + ndimage.gaussian_filter(rng.normal(0, 0.05, (n, n)), 1)
    t_cu = ndimage.gaussian_filter(rng.normal(0, 0.1, (n, n)), 1)
    hr = lr * 10 ** np.stack([t_as, t_cu])
    ds = g.assign(lr=((schema.ELEMENT, schema.Y, schema.X), lr.astype("float32")),
                  hr=((schema.ELEMENT, schema.Y, schema.X), hr.astype("float32")),
                  elevation=((schema.Y, schema.X), elev))
    ds = ds.assign_coords({schema.ELEMENT: ["As", "Cu"],
                           schema.ELEMENT_UNITS: (schema.ELEMENT, ["ppm", "ppm"])})
    return gs.add_terrain(ds)


@pytest.fixture(scope="module")
def planted() -> xr.Dataset:
    return planted_survey()


@pytest.fixture(scope="module")
def fitted(planted) -> dict[str, GeoSRModel]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {kind: gs.train(planted, kind, "geochem+terrain", seed=0)
                for kind in ("trees", "ridge")}


def test_multiscale_features_of_a_constant_are_the_constant_and_zero_differences():
    f = MultiScale(1, scales=(1.0, 2.0))
    out = f(torch.full((1, 1, 20, 20), 3.0))[0, :, 10, 10]
    assert f.reach == 6 and f.n_features == 5
    np.testing.assert_allclose(out.numpy(), [3, 3, 0, 3, 0], atol=1e-12)
    assert f.names(["As"]) == ["As", "As@1", "As-@1", "As@2", "As-@2"]


def test_bad_scales_are_a_parameter_error():
    with pytest.raises(ParameterError, match="scales"):
        get_model("trees", 3, 2, scales=[])
    with pytest.raises(ParameterError, match="scales"):
        get_model("ridge", 3, 2, scales=[-1.0])


@pytest.mark.parametrize("kind", ["trees", "ridge"])
def test_cell_model_learns_the_planted_element_on_validation_blocks(fitted, kind):
    per = fitted[kind].validation["per_element"]
    assert per["As"]["gain"] > 0.2, per
    assert per["Cu"]["gain"] < 0.05, per
    assert fitted[kind].prediction.context == "tile"
    assert fitted[kind].prediction.border == 36  # the features reach 3 sigma of 12 cells


@pytest.mark.parametrize("kind", ["trees", "ridge"])
def test_cell_model_file_round_trip_predicts_the_same(fitted, planted, kind, tmp_path):
    model = fitted[kind]
    path = model.save(tmp_path / f"{kind}.pt")
    back = GeoSRModel.load(path)
    assert back.digest == model.digest
    a = planted.geosr.super_resolve(model, uncertainty=False)["hr_pred"].values
    b = planted.geosr.super_resolve(back, uncertainty=False)["hr_pred"].values
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["trees", "ridge"])
def test_cell_model_tiled_equals_untiled(fitted, planted, kind):
    model = fitted[kind]
    whole = planted.geosr.super_resolve(model, uncertainty=False, tile=None)
    tiled = planted.geosr.super_resolve(model, uncertainty=False, tile=48)
    np.testing.assert_allclose(tiled["residual_pred"].values, whole["residual_pred"].values,
                               rtol=0, atol=1e-6)


def test_same_seed_same_trees(planted, fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        again = gs.train(planted, "trees", "geochem+terrain", seed=0)
    assert again.digest == fitted["trees"].digest


def test_calibrated_trees_keep_the_learnable_element_only(fitted, planted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cal = gs.calibrate(planted, fitted["trees"], folds=2)
    assert cal.shrinkage["As"] > 0.5
    assert cal.shrinkage["Cu"] == 0.0
    assert cal.validation["per_element"]["As"]["gain"] > 0.15


def test_auto_is_not_a_single_method_for_train(planted):
    with pytest.raises(ParameterError, match="gs.select"):
        gs.train(planted, "auto")


@pytest.fixture(scope="module")
def selected(planted, fitted) -> GeoSRModel:
    """Trees against a network that learned nothing (one epoch at learning rate 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idle = gs.train(planted, "srcnn", "geochem+terrain", seed=0, epochs=1,
                        learning_rate=1e-12, progress=False)
    # a model file from before the split recorded its blocks per role is the same split
    assert "blocks" in idle.training.split
    split = {k: v for k, v in idle.training.split.items() if k != "blocks"}
    idle = dataclasses.replace(idle, training=dataclasses.replace(idle.training, split=split))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return gs.select(planted, [idle, fitted["trees"]], folds=2)


def test_auto_keeps_the_trees_where_they_win_and_the_sparse_map_elsewhere(selected):
    table = selected.notes["selection"]
    assert table["As"]["method"] == "trees"
    assert table["Cu"]["method"] == "sparse map"
    assert set(table["As"]["candidates"]) == {"srcnn", "trees", "mean of srcnn + trees"}
    assert table["As"]["candidates"]["trees"]["gain_val"] > 0.15
    assert table["As"]["candidates"]["trees"]["gain_val_se"] > 0
    # the trees alone are judged out of fold on the training ground; with the network,
    # on the validation blocks where both have predictions
    cells = {k: v["cells_val"] for k, v in table["As"]["candidates"].items()}
    assert cells["trees"] > 2 * cells["mean of srcnn + trees"] == 2 * cells["srcnn"]
    assert "out-of-fold blocks" in selected.verdict_of("As")  # the trees' own evidence
    assert selected.network_name == "selection"
    assert selected.network_config["weights"] == [[1.0], [0.0]]  # only the trees are stored
    assert selected.shrinkage["Cu"] == 0.0 and selected.shrinkage["As"] > 0.5
    text = selected.summary()
    assert "method per element" in text and "trees" in text and "sparse map" in text


def test_auto_model_file_round_trip_and_prediction(selected, planted, tmp_path):
    back = GeoSRModel.load(selected.save(tmp_path / "auto.pt"))
    assert back.digest == selected.digest
    assert back.notes["selection"]["As"]["method"] == "trees"
    out = planted.geosr.super_resolve(back)
    res = out["residual_pred"].values
    assert np.all(res[1][np.isfinite(res[1])] == 0)  # Cu: the sparse map
    assert np.nanstd(res[0]) > 0.05  # As: the trees' correction
    assert np.isfinite(out["hr_pred_std"].values[0]).any()


def test_auto_returns_the_sparse_map_where_nothing_beats_it(planted, fitted):
    noise = planted.copy()
    rng = np.random.default_rng(3)
    hr = planted["lr"].values * 10 ** ndimage.gaussian_filter(
        rng.normal(0, 0.1, planted["lr"].shape), (0, 1, 1))
    noise["hr"] = (planted["hr"].dims, hr.astype("float32"))
    with pytest.warns(UserWarning, match="As, Cu returned as the sparse map"):
        model = gs.select(noise, ["ridge"], "geochem+terrain", seed=0)
    assert {row["method"] for row in model.notes["selection"].values()} == {"sparse map"}
    assert model.network_config["candidates"] == []
    out = noise.geosr.super_resolve(model, uncertainty=False)
    np.testing.assert_array_equal(out["hr_pred"].values, noise["lr"].values)


def test_accessor_train_auto_selects(planted, fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = planted.geosr.train("auto", "geochem+terrain", candidates=["ridge"], seed=0)
    assert model.network_name == "selection"
    assert model.notes["selection"]["As"]["method"] == "ridge"


def test_selection_weights_mix_candidates_and_their_spread():
    from geochem_sr.models.selection import Selection

    torch.manual_seed(0)
    net = Selection(3, 2, candidates=[{"name": "ridge", "config": {"scales": [1.0]}},
                                      {"name": "ridge", "config": {"scales": [1.0]}}],
                    weights=[[0.5, 0.5], [0.0, 1.0]])
    for k, member in enumerate(net.members):
        member.weight.normal_()
        member.bias.fill_(float(k))
    x = torch.randn(1, 3, 10, 10)
    a, b = net.members[0](x), net.members[1](x)
    mean, spread = net.mean_and_spread(x)
    torch.testing.assert_close(mean[:, 0], (a[:, 0] + b[:, 0]) / 2)
    torch.testing.assert_close(mean[:, 1], b[:, 1])
    torch.testing.assert_close(spread[:, 0], (a[:, 0] - b[:, 0]).abs() / 2)  # two points
    assert float(spread[:, 1].abs().max()) == 0.0
    with pytest.raises(ParameterError, match="weights"):
        Selection(3, 2, candidates=[{"name": "ridge"}], weights=[[0.5], [1.0]])


def test_evaluate_with_the_model_scores_its_test_blocks_beside_the_sparse_map(fitted, planted):
    model = fitted["ridge"]
    pred = planted.geosr.super_resolve(model, uncertainty=False)
    table = planted.geosr.evaluate(pred, model)
    assert ("sparse map", "rmse_log10") in table.columns and ("", "gain") in table.columns
    assert "test blocks" in table.attrs["scored_on"]
    whole = planted.geosr.evaluate(pred)
    assert table.loc["As", ("prediction", "rmse_log10")] != whole.loc["As", "rmse_log10"]
    assert table.loc["As", ("", "gain")] > 0.1


def test_auto_of_ensembles_keeps_the_members_spread_through_its_file(planted, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = gs.select(planted, ["ridge", "trees"], "geochem+terrain", seed=0, ensemble=2,
                          folds=2)
    assert model.prediction.spread == "members"
    back = GeoSRModel.load(model.save(tmp_path / "auto_members.pt"))
    assert back.digest == model.digest
    std = planted.geosr.super_resolve(back)["hr_pred_std"].values[0]
    assert np.isfinite(std).any() and np.nanstd(std) > 0  # varies from cell to cell


def _cross_fit(ds: xr.Dataset, model: GeoSRModel):
    from geochem_sr.inference import prepare_inputs
    from geochem_sr.training.cross_fit import cross_fit_cells
    from geochem_sr.trust import training_roles

    roles = training_roles(ds, model)
    return cross_fit_cells(prepare_inputs(ds, model), model, roles), roles


def test_cross_fit_predicts_every_training_cell_from_fits_that_never_saw_its_block(
        planted, fitted):
    from geochem_sr.sampling import ROLE_TEST, ROLE_TRAIN, ROLE_VAL, BlockSplitter
    from geochem_sr.training.cross_fit import can_cross_fit, fold_plan

    (res, spread, k), roles = _cross_fit(planted, fitted["ridge"])
    codes = roles.values
    ground = (codes == ROLE_TRAIN) | (codes == ROLE_VAL)
    assert k >= 2
    # the training-time check builds no fold and agrees with the folds themselves
    assert can_cross_fit(planted, roles, 0, 32) and len(fold_plan(planted, roles, 0, 32)) == k
    ids = BlockSplitter(int(roles.attrs["block_size_cells"][0])).block_ids(planted)
    one_block = roles.where(xr.DataArray(ids == ids[ground][0], dims=("y", "x")),
                            0).astype(roles.dtype)  # one block of ground left
    one_block.attrs = roles.attrs
    assert not can_cross_fit(planted, one_block, 0, 32) and not fold_plan(planted, one_block,
                                                                           0, 32)
    assert np.isfinite(res[0][ground]).all() and np.isnan(res[0][~ground]).all()
    assert not np.isfinite(res[0][codes == ROLE_TEST]).any()
    assert (spread[0][ground] == 0).all()  # one regressor: no members' spread
    # a block's dense values changed: its own out-of-fold predictions stay the same
    block = BlockSplitter(int(roles.attrs["block_size_cells"][0])).block_ids(planted)
    one = block == block[ground][0]
    changed = planted.copy()
    changed["hr"] = planted["hr"].where(~xr.DataArray(one, dims=("y", "x")),
                                        planted["hr"] * 30)
    (res2, _, _), _ = _cross_fit(changed, fitted["ridge"])
    np.testing.assert_array_equal(res2[:, one & ground], res[:, one & ground])
    assert np.abs(res2[:, ground & ~one] - res[:, ground & ~one]).max() > 1e-3


def test_cell_model_is_calibrated_on_out_of_fold_evidence(planted, fitted):
    trees = fitted["trees"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        crossed = gs.calibrate(planted, trees)
    assert crossed.validation["calibration"]["fitted_on"].startswith("out-of-fold")
    a = crossed.validation["per_element"]
    assert a["As"]["cells_val"] > 2 * trees.validation["cells"]["val"]
    assert a["As"]["shrinkage"] > 0.5 and a["Cu"]["shrinkage"] == 0.0
    assert "out-of-fold blocks" in a["As"]["verdict"]
    with pytest.raises(ParameterError, match="folds"):
        gs.calibrate(planted, trees, folds=1)


@pytest.mark.parametrize("kind", ["trees", "ridge"])
def test_cell_models_fit_their_validation_blocks_too_and_are_calibrated_out_of_fold_only(
        planted, fitted, kind):
    model = fitted[kind]
    assert model.validation["fitted_on"] == "training and validation blocks"
    assert fitted["trees"].validation["cells"] == fitted["ridge"].validation["cells"]
    with pytest.raises(ParameterError, match=f"this {kind} model was fitted on its "
                                             "validation blocks too"):
        gs.calibrate(planted, model, folds=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cal = gs.calibrate(planted, model)
    assert cal.validation["calibration"]["fitted_on"].startswith("out-of-fold")
    assert cal.shrinkage["As"] > 0.5 and cal.shrinkage["Cu"] == 0.0
    assert cal.validation["per_element"]["As"]["gain"] > 0.15
