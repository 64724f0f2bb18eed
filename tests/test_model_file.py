"""The model file: round trip, refusal of damaged or tampered files, compatibility checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import FAST, INPUTS, learnable_survey

from geochem_sr import schema
from geochem_sr.errors import ModelFileError, ModelMismatchError
from geochem_sr.model_file import FORMAT, GeoSRModel
from geochem_sr.patches import BlockSplitter, prepare_training_data
from geochem_sr.training import predict_patches, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def survey():
    return learnable_survey()


@pytest.fixture(scope="module")
def data(survey):
    return prepare_training_data(survey, INPUTS, splitter=BlockSplitter(32, seed=0),
                                 patch_size=16, stride=16)


@pytest.fixture(scope="module")
def model(survey, data) -> GeoSRModel:
    torch.set_num_threads(1)
    return train(survey, epochs=3, data=data, **FAST)


@pytest.fixture(scope="module")
def batch(data) -> torch.Tensor:
    return torch.stack([data.val[i][0] for i in range(len(data.val))])


@pytest.fixture
def saved(model, tmp_path):
    return model.save(tmp_path / "model.pt")


# --------------------------------------------------------------------------- round trip
def test_round_trip_gives_identical_predictions(model, saved, batch):
    loaded = GeoSRModel.load(saved)
    assert torch.equal(predict_patches(loaded, batch), predict_patches(model, batch))
    assert loaded.digest == model.digest
    assert loaded.metadata() == model.metadata()
    assert loaded.channels == model.channels and loaded.norm_stats == model.norm_stats
    assert loaded.validation["per_element"]["As"] == model.validation["per_element"]["As"]
    assert loaded.history == model.history
    assert all(torch.equal(loaded.state_dict[k], model.state_dict[k]) for k in model.state_dict)


def test_file_holds_only_plain_data(saved):
    payload = torch.load(saved, weights_only=True)  # no code is unpickled
    assert set(payload) == {"format", "meta_json", "state_dict", "digest"}
    assert payload["format"] == FORMAT
    meta = json.loads(payload["meta_json"])
    assert meta["network_name"] == "srcnn" and meta["elements"] == ["As", "Cu"]


# --------------------------------------------------------------------------- refusals
def test_tampered_weight_is_refused(saved):
    payload = torch.load(saved, weights_only=True)
    key = sorted(payload["state_dict"])[0]
    payload["state_dict"][key] = payload["state_dict"][key].clone()
    payload["state_dict"][key].view(-1)[0] += 1e-3
    torch.save(payload, saved)  # the digest is not fixed
    with pytest.raises(ModelFileError, match="digest"):
        GeoSRModel.load(saved)


def test_tampered_metadata_is_refused(saved):
    payload = torch.load(saved, weights_only=True)
    meta = json.loads(payload["meta_json"])
    meta["norm_stats"]["slope"] = [0.0, 1.0]
    payload["meta_json"] = json.dumps(meta, sort_keys=True)
    torch.save(payload, saved)
    with pytest.raises(ModelFileError, match="digest"):
        GeoSRModel.load(saved)


def test_truncated_file_is_refused(saved):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="cannot be read"):
        GeoSRModel.load(saved)


def test_files_that_are_not_models_are_refused(tmp_path):
    other = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ModelFileError, match="format"):
        GeoSRModel.load(other)
    with pytest.raises(ModelFileError, match="not found"):
        GeoSRModel.load(tmp_path / "missing.pt")


class _Payload:
    """An arbitrary class: a pickle of it would run code on load."""


def test_pickled_objects_are_not_unpickled(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "meta_json": "{}", "state_dict": {}, "digest": "",
                "extra": _Payload()}, evil)
    with pytest.raises(ModelFileError, match="cannot be read"):
        GeoSRModel.load(evil)


# --------------------------------------------------------------------------- compatibility
def test_compatible_dataset_passes(model, survey):
    model.check_compatible(survey)


def test_other_elements_are_a_mismatch(model):
    other = learnable_survey(elements=("As", "Zn"))
    with pytest.raises(ModelMismatchError, match=r"elements.*\['Cu'\]"):
        model.check_compatible(other)


def test_missing_channel_variable_is_a_mismatch(model, survey):
    with pytest.raises(ModelMismatchError, match="slope"):
        model.check_compatible(survey.drop_vars(schema.SLOPE))


def test_other_units_are_a_mismatch(model, survey):
    ppb = survey.assign_coords({schema.ELEMENT_UNITS: (schema.ELEMENT, ["ppb", "ppm"])})
    with pytest.raises(ModelMismatchError, match="As: ppm vs ppb"):
        model.check_compatible(ppb)


def test_other_geology_embedding_is_a_mismatch(model):
    wider = learnable_survey(n_embedding=5)
    with pytest.raises(ModelMismatchError, match="geology_embedding.*3.*5"):
        model.check_compatible(wider)
    other_vectors = learnable_survey(seed=1)
    with pytest.raises(ModelMismatchError, match="geology_vocabulary"):
        model.check_compatible(other_vectors)


# --------------------------------------------------------------------------- summary
def test_summary_prints_the_validation_table(model):
    text = model.summary()
    assert "srcnn" in text and INPUTS in text and "3 epochs" in text
    assert "rmse_lr" in text and "rmse_pred" in text and "gain" in text
    for el in model.elements:
        rep = model.validation["per_element"][el]
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(el))
        assert f"{rep['rmse_lr']:.4f}" in line and f"{rep['rmse_pred']:.4f}" in line
        assert np.isfinite(rep["gain"])
