"""Ensembles of networks: train(ensemble=n), the Ensemble network, model files, inference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_training import FAST, INPUTS, learnable_survey

from geochem_sr import inference
from geochem_sr.errors import ParameterError
from geochem_sr.features import stack_inputs
from geochem_sr.models import GeoSRModel, get_model
from geochem_sr.sampling import BlockSplitter, prepare_training_data
from geochem_sr.training import TrainConfig, predict_patches, train
from geochem_sr.training.ensembles import member_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup():
    survey = learnable_survey()
    data = prepare_training_data(survey, INPUTS, splitter=BlockSplitter(32, seed=0),
                                 patch_size=16, stride=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ens = train(survey, epochs=3, patience=None, data=data, ensemble=2, seed=5, **FAST)
        members = [train(survey, epochs=3, patience=None, data=data, seed=s, **FAST)
                   for s in (5, 6)]
    return survey, data, ens, members


def test_ensemble_is_the_mean_of_its_members(setup):
    survey, data, ens, members = setup
    assert ens.network_name == "ensemble" and ens.network_config["n"] == 2
    assert [m["seed"] for m in ens.training.ensemble] == [5, 6]
    assert [m["epochs_run"] for m in ens.training.ensemble] == [3, 3]
    x = torch.stack([data.val[i][0] for i in range(4)])
    mean = (predict_patches(members[0], x) + predict_patches(members[1], x)) / 2
    torch.testing.assert_close(predict_patches(ens, x), mean, atol=1e-5, rtol=0)
    rep = ens.validation["per_element"]
    assert set(rep) == set(ens.elements) and all(v["cells"] > 0 for v in rep.values())
    assert ens.validation["val_loss"] < ens.validation["val_loss_zero"]


def test_ensemble_round_trips_and_predicts_tiled(setup, tmp_path):
    survey, _, ens, _ = setup
    path = ens.save(tmp_path / "ens.pt")
    back = GeoSRModel.load(path)
    assert back.network_name == "ensemble" and back.digest == ens.digest
    x = stack_inputs(survey, back.channels, back.norm_stats).values
    tiled, _ = inference.predict_array(back, x, tile=32)
    whole, _ = inference.predict_array(back, x, tile=256)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert np.nanstd(whole) > 0


def test_bad_ensembles_are_refused():
    with pytest.raises(ParameterError, match="ensemble"):
        get_model("ensemble", 3, 2, member="ensemble")
    survey = learnable_survey(n=64)
    with pytest.raises(ParameterError, match="ensemble"):
        train(survey, epochs=1, ensemble=0, **FAST)


def test_members_get_their_seed_and_checkpoint():
    config = TrainConfig(seed=5, ensemble=3, checkpoint="run.ckpt", epochs=7)
    second = member_config(config, 1)
    assert (second.seed, second.checkpoint, second.ensemble, second.epochs) == \
        (6, "run.ckpt.member1", 1, 7)
    assert member_config(TrainConfig(ensemble=2), 1).checkpoint is None


def test_the_validation_report_builds_the_network_once(setup, monkeypatch):
    from geochem_sr.training.data import TrainingParts
    from geochem_sr.training.ensembles import combine

    _, data, ens, members = setup
    built = []
    build = GeoSRModel.build_network

    def counted(self, device=None):
        built.append(self.network_name)
        return build(self, device)

    monkeypatch.setattr(GeoSRModel, "build_network", counted)
    again = combine(members, TrainingParts(data, 16), "cpu")
    assert built == ["ensemble"]
    for el, rep in again.validation["per_element"].items():
        want = ens.validation["per_element"][el]
        assert rep["cells"] == want["cells"]
        assert rep["rmse_pred"] == pytest.approx(want["rmse_pred"], rel=1e-4)
