"""The model file: round trip, refusal of damaged or tampered files, compatibility checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_training import FAST, INPUTS, learnable_survey

from geochem_sr import schema
from geochem_sr.errors import ModelFileError, ModelMismatchError
from geochem_sr.models import GeoSRModel, PredictionSettings, TrainingRecord
from geochem_sr.models.model_file import FORMAT, FORMAT_2
from geochem_sr.models.payload import checksum
from geochem_sr.sampling import BlockSplitter, prepare_training_data
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


def _rewrite(path: Path, meta: Callable[[dict], Any] | None = None,
             state: Callable[[dict], Any] | None = None) -> None:
    """Edit a model file's metadata and/or weights *and* recompute its checksum, as anyone
    can: what remains to refuse the file is the check of its values."""
    payload = torch.load(path, weights_only=True)
    if meta is not None:
        m = json.loads(payload["meta_json"])
        meta(m)
        payload["meta_json"] = json.dumps(m, sort_keys=True)
    if state is not None:
        payload["state_dict"] = {k: v.clone() for k, v in payload["state_dict"].items()}
        state(payload["state_dict"])
    payload["checksum"] = checksum(payload["format"], payload["meta_json"], payload["digest"],
                                   payload["state_dict"])
    torch.save(payload, path)


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
    assert set(payload) == {"format", "meta_json", "state_dict", "digest", "checksum"}
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
    with pytest.raises(ModelFileError, match="content does not match its checksum"):
        GeoSRModel.load(saved)


def test_tampered_metadata_is_refused(saved):
    payload = torch.load(saved, weights_only=True)
    meta = json.loads(payload["meta_json"])
    meta["norm_stats"]["slope"] = [0.0, 1.0]
    payload["meta_json"] = json.dumps(meta, sort_keys=True)
    torch.save(payload, saved)
    with pytest.raises(ModelFileError, match="content does not match its checksum"):
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


def _legacy_metadata(model: GeoSRModel, fmt: str) -> dict:
    """The metadata as formats 1 and 2 held it: the records in one untyped ``extra``."""
    meta = {k: v for k, v in model.metadata().items()
            if k not in ("prediction", "training", "notes")}
    return {**meta, "extra": json.loads(json.dumps(model.extra)), "format": fmt}


def _write_format_1(model: GeoSRModel, path: Path) -> None:
    """A model file as geochem_sr wrote it before the digest/checksum split."""
    meta = _legacy_metadata(model, "geochem_sr.model/1")
    meta_json = json.dumps(meta, sort_keys=True)
    h = hashlib.sha256(meta_json.encode())
    for key in sorted(model.state_dict):
        t = model.state_dict[key].contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    torch.save({"format": "geochem_sr.model/1", "meta_json": meta_json,
                "state_dict": model.state_dict, "digest": h.hexdigest()}, path)


def test_files_of_the_previous_format_load_and_are_checked(model, tmp_path):
    old = tmp_path / "old.pt"
    _write_format_1(model, old)
    back = GeoSRModel.load(old)
    assert back.digest == model.digest and back.norm_stats == model.norm_stats
    _write_format_1(dataclasses.replace(model, shrinkage={"As": 50.0}), old)
    with pytest.raises(ModelFileError, match=r"shrinkage\['As'\]"):
        GeoSRModel.load(old)
    payload = torch.load(old, weights_only=True)
    payload["meta_json"] = payload["meta_json"].replace('"As": 50.0', '"As": 0.5')
    torch.save(payload, old)
    with pytest.raises(ModelFileError, match="content does not match its checksum"):
        GeoSRModel.load(old)


def test_files_of_format_2_load_into_the_records(model, tmp_path):
    calibrated = dataclasses.replace(
        model, prediction=PredictionSettings(context="tile", std_floor={"As": 0.05}),
        notes={"site": "test"})
    meta_json = json.dumps(_legacy_metadata(calibrated, FORMAT_2), sort_keys=True)
    assert '"std_floor"' in meta_json and '"prediction"' not in meta_json
    state = calibrated.state_dict
    digest = calibrated.digest  # format 2 hashed the same identity
    path = tmp_path / "v2.pt"
    torch.save({"format": FORMAT_2, "meta_json": meta_json, "state_dict": state,
                "digest": digest, "checksum": checksum(FORMAT_2, meta_json, digest, state)},
               path)
    back = GeoSRModel.load(path)
    assert back.prediction == calibrated.prediction and back.training == model.training
    assert back.notes == {"site": "test"} and back.digest == digest
    saved = GeoSRModel.load(back.save(tmp_path / "v3.pt"))
    assert torch.load(tmp_path / "v3.pt", weights_only=True)["format"] == FORMAT
    assert saved.metadata() == back.metadata()


def test_extra_is_the_records_as_format_2_held_them(model):
    extra = model.extra
    assert extra["seed"] == model.training.seed and extra["split"] == model.training.split
    assert "context" not in extra and "std_floor" not in extra  # None: left out
    tiled = dataclasses.replace(model, extra={**extra, "context": "tile", "site": "x"})
    assert tiled.prediction == PredictionSettings(context="tile")
    assert tiled.training == model.training and tiled.notes == {"site": "x"}
    assert tiled.digest == dataclasses.replace(
        model, prediction=PredictionSettings(context="tile")).digest
    bare = dataclasses.replace(tiled, extra={"std_floor": {"As": 0.1}})
    assert bare.training == TrainingRecord() and bare.notes == {}
    assert bare.prediction == PredictionSettings(std_floor={"As": 0.1})
    copy = dataclasses.replace(tiled)
    copy.extra = {}
    assert copy.prediction == PredictionSettings() and tiled.prediction.context == "tile"


class _Payload:
    """An arbitrary class: a pickle of it would run code on load."""


def test_pickled_objects_are_not_unpickled(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "meta_json": "{}", "state_dict": {}, "digest": "",
                "extra": _Payload()}, evil)
    with pytest.raises(ModelFileError, match="cannot be read"):
        GeoSRModel.load(evil)


# --------------------------------------------------------------------------- values
def _set(field: str, value: Any) -> Callable[[dict], None]:
    return lambda m: m.__setitem__(field, value)


def _set_in(field: str, key: str, value: Any) -> Callable[[dict], None]:
    return lambda m: m[field].__setitem__(key, value)


def _del_in(field: str, key: str) -> Callable[[dict], None]:
    return lambda m: m[field].pop(key)


def _set_channel(i: int, value: Any) -> Callable[[dict], None]:
    return lambda m: m["channels"].__setitem__(i, value)


BAD_VALUES = {
    "shrinkage 50": (_set("shrinkage", {"As": 50.0}), r"shrinkage\['As'\].*\[0, 1\].*50"),
    "shrinkage negative": (_set("shrinkage", {"Cu": -0.1}), r"shrinkage\['Cu'\].*-0\.1"),
    "shrinkage nan": (_set("shrinkage", {"As": math.nan}), r"shrinkage\['As'\].*nan"),
    "shrinkage text": (_set("shrinkage", {"As": "1"}), r"shrinkage\['As'\].*'1'"),
    "shrinkage of another element": (_set("shrinkage", {"Zn": 0.5}), r"shrinkage.*'Zn'"),
    "std_scale 0": (_set("std_scale", {"As": 0.0}), r"std_scale\['As'\].*> 0.*0\.0"),
    "std_scale negative": (_set("std_scale", {"Cu": -2.0}), r"std_scale\['Cu'\].*-2\.0"),
    "std_scale inf": (_set("std_scale", {"As": math.inf}), r"std_scale\['As'\].*inf"),
    "std 0": (_set_in("norm_stats", "lr:As", [0.0, 0.0]),
              r"norm_stats\['lr:As'\].*std.*> 0.*0\.0"),
    "mean nan": (_set_in("norm_stats", "slope", [math.nan, 1.0]),
                 r"norm_stats\['slope'\].*mean.*nan"),
    "stats of a channel missing": (_del_in("norm_stats", "slope"),
                                   r"norm_stats.*missing.*'slope'"),
    "stats of no channel": (_set_in("norm_stats", "depth", [0.0, 1.0]),
                            r"norm_stats.*'depth'"),
    "patch_size 0": (_set("patch_size", 0), r"patch_size.*positive integer.*0"),
    "patch_size text": (_set("patch_size", "16"), r"patch_size.*positive integer.*'16'"),
    "patch_size bool": (_set("patch_size", True), r"patch_size.*positive integer.*True"),
    "patch_size float": (_set("patch_size", 16.5), r"patch_size.*positive integer.*16\.5"),
    "unknown element": (_set("elements", ["As", "Xx"]), r"elements.*chemical symbol.*'Xx'"),
    "duplicate element": (_set("elements", ["As", "As"]), r"elements.*duplicate.*'As'"),
    "duplicate channel": (_set_channel(1, "lr:As"), r"channels.*duplicate.*'lr:As'"),
    "channel not str": (_set_channel(0, 3), r"channels.*str.*3"),
    "channels not a list": (_set("channels", "lr:As"), r"channels.*list.*'lr:As'"),
    "unit missing": (_del_in("units", "Cu"), r"units.*'Cu'"),
    "aoa threshold nan": (_set("aoa", {"threshold": math.nan}), r"aoa\['threshold'\].*nan"),
    "aoa of other channels": (_set("aoa", {"channels": ["lr:As"]}), r"aoa\['channels'\]"),
    "aoa reference": (_set("aoa", {"reference": [[0.0, 1.0]]}), r"aoa\['reference'\].*9"),
    "unknown context": (_set_in("prediction", "context", "whole"),
                        r"prediction\.context.*'whole'"),
    "history not a list": (_set("history", "3 epochs"), r"history.*list.*'3 epochs'"),
    "std_floor negative": (_set_in("prediction", "std_floor", {"As": -1.0}),
                           r"prediction\.std_floor\['As'\].*-1\.0"),
    "std_floor of another element": (_set_in("prediction", "std_floor", {"Zn": 0.1}),
                                     r"prediction\.std_floor.*'Zn'"),
    "unknown record field": (_set_in("training", "epochs", 3), r"metadata incomplete.*epochs"),
    "notes not a mapping": (_set("notes", ["a note"]), r"notes.*mapping"),
    "extra in format 3": (_set("extra", {}), r"unknown fields \['extra'\]"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_wrong_values_are_refused_even_with_a_recomputed_checksum(saved, case):
    edit, message = BAD_VALUES[case]
    _rewrite(saved, meta=edit)
    with pytest.raises(ModelFileError, match=message) as err:
        GeoSRModel.load(saved)
    assert str(saved) in str(err.value)


def test_non_finite_weights_are_refused(saved):
    key = sorted(torch.load(saved, weights_only=True)["state_dict"])[-1]
    _rewrite(saved, state=lambda s: s[key].view(-1).__setitem__(0, math.inf))
    with pytest.raises(ModelFileError, match=rf"weights.*'{key}'.*finite.*1"):
        GeoSRModel.load(saved)


def test_wrong_values_are_refused_before_saving(model, tmp_path):
    bad = dataclasses.replace(model, shrinkage={"As": 50.0})
    with pytest.raises(ModelFileError, match=r"shrinkage\['As'\].*\[0, 1\].*50"):
        bad.save(tmp_path / "bad.pt")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ModelFileError, match=r"std_scale\['Cu'\]"):
        dataclasses.replace(model, std_scale={"Cu": math.nan}).check()


def test_calibration_values_at_the_bounds_load(model, tmp_path):
    ok = dataclasses.replace(model, shrinkage={"As": 0.0, "Cu": 1.0}, std_scale={"As": 1e-6},
                             aoa={"threshold": 0.0},
                             prediction=PredictionSettings(context="tile", std_floor={"As": 0}))
    back = GeoSRModel.load(ok.save(tmp_path / "ok.pt"))
    assert back.shrinkage == {"As": 0.0, "Cu": 1.0} and back.digest == ok.digest


# --------------------------------------------------------------------------- network
def _in_channels_plus_one(m: dict) -> None:
    m["network_config"]["in_channels"] += 1


def _out_channels_plus_one(m: dict) -> None:
    m["network_config"]["out_channels"] += 1


BAD_NETWORKS = {
    "wider": (_set_in("network_config", "features", 16),
              r"shape.*'body\.0\.0\.weight'.*\(16, 9, 3, 3\).*\(8, 9, 3, 3\)"),
    "other kernels": (_set_in("network_config", "kernel_sizes", [3, 3, 3]),
                      r"shape.*'body\.1\.0\.weight'.*\(4, 8, 3, 3\).*\(4, 8, 1, 1\)"),
    "other network": (_set("network_name", "vdsr"), r"network_config.*vdsr"),
    "unknown network": (_set("network_name", "resnet"), r"network_name.*'resnet'"),
    "in_channels": (_in_channels_plus_one, r"network_config\['in_channels'\].*channels"),
    "out_channels": (_out_channels_plus_one, r"network_config\['out_channels'\].*elements"),
}


@pytest.mark.parametrize("case", list(BAD_NETWORKS))
def test_a_network_config_that_does_not_fit_the_weights_is_refused(saved, case):
    edit, message = BAD_NETWORKS[case]
    _rewrite(saved, meta=edit)
    with pytest.raises(ModelFileError, match=message) as err:
        GeoSRModel.load(saved)
    assert str(saved) in str(err.value)


def test_missing_and_unexpected_weights_are_named(saved):
    key = sorted(torch.load(saved, weights_only=True)["state_dict"])[0]
    _rewrite(saved, state=lambda s: s.pop(key))
    with pytest.raises(ModelFileError, match=rf"missing.*'{key}'"):
        GeoSRModel.load(saved)
    _rewrite(saved, state=lambda s: s.__setitem__(key, torch.zeros(2)) or
             s.__setitem__("head.bias", torch.zeros(2)))
    with pytest.raises(ModelFileError, match=r"unexpected.*'head\.bias'"):
        GeoSRModel.load(saved)


def _ensemble_of(model: GeoSRModel, n: int = 2) -> GeoSRModel:
    """An ensemble of ``n`` copies of ``model``, stored as training.train(ensemble=n) does."""
    cfg = dict(model.network_config)
    config = {"in_channels": cfg.pop("in_channels"), "out_channels": cfg.pop("out_channels"),
              "member": model.network_name, "n": n, "member_config": cfg}
    state = {f"members.{i}.{k}": v for i in range(n) for k, v in model.state_dict.items()}
    return dataclasses.replace(model, network_name="ensemble", network_config=config,
                               state_dict=state)


def test_ensembles_are_checked_against_their_weights(model, batch, tmp_path):
    ens = _ensemble_of(model)
    path = ens.save(tmp_path / "ens.pt")
    back = GeoSRModel.load(path)
    torch.testing.assert_close(predict_patches(back, batch), predict_patches(model, batch))
    _rewrite(path, meta=lambda m: m["network_config"].__setitem__("n", 3))
    with pytest.raises(ModelFileError, match=r"missing.*'members\.2\."):
        GeoSRModel.load(path)
    _rewrite(path, meta=lambda m: m["network_config"].update(
        n=2, member_config={**m["network_config"]["member_config"], "features": 4}))
    with pytest.raises(ModelFileError, match=r"shape.*'members\.0\.body\.0\.0\.weight'"):
        GeoSRModel.load(path)


# --------------------------------------------------------------------------- identity
def test_digest_is_the_content_not_the_run_record(model, tmp_path):
    other_run = dataclasses.replace(
        model, history=[{"epoch": 1, "seconds": 99.0}], created="2001-01-01T00:00:00+00:00",
        validation={"val_loss": 0.5}, package_version="0.0.0",
        training=dataclasses.replace(model.training, device="cuda:3", epochs_run=99),
        notes={"comment": "another run"})
    assert other_run.digest == model.digest
    assert GeoSRModel.load(other_run.save(tmp_path / "m.pt")).digest == model.digest

    key = sorted(model.state_dict)[0]
    weights = {k: v.clone() for k, v in model.state_dict.items()}
    weights[key].view(-1)[0] += 1e-6
    changed = [
        dataclasses.replace(model, state_dict=weights),
        dataclasses.replace(model, shrinkage={"As": 0.5}),
        dataclasses.replace(model, std_scale={"As": 2.0}),
        dataclasses.replace(model, prediction=PredictionSettings(context="tile")),
        dataclasses.replace(model, prediction=PredictionSettings(std_floor={"As": 0.1})),
        dataclasses.replace(model, norm_stats={**model.norm_stats, "slope": (0.0, 2.0)}),
        dataclasses.replace(model, network_config={**model.network_config, "activation": "relu"}),
        dataclasses.replace(model, patch_size=model.patch_size * 2),
        dataclasses.replace(model, aoa={"threshold": 1.0}),
    ]
    digests = [m.digest for m in changed]
    assert model.digest not in digests and len(set(digests)) == len(digests)


def test_a_retrained_model_has_the_same_digest(survey, data):
    first, second = (train(survey, epochs=1, data=data, seed=3, **FAST) for _ in range(2))
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert first.digest == second.digest


def test_the_file_checksum_covers_the_run_record(saved):
    payload = torch.load(saved, weights_only=True)
    meta = json.loads(payload["meta_json"])
    meta["history"][0]["train_loss"] = 0.0
    payload["meta_json"] = json.dumps(meta, sort_keys=True)
    torch.save(payload, saved)  # the checksum is not fixed
    with pytest.raises(ModelFileError, match="content does not match its checksum"):
        GeoSRModel.load(saved)


# --------------------------------------------------------------------------- saving
def test_saving_into_a_missing_folder_names_it(model, tmp_path):
    folder = tmp_path / "no" / "such"
    with pytest.raises(ModelFileError, match=rf"folder '{re.escape(str(folder))}'.*does not exist"):
        model.save(folder / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_saving_under_a_regular_file_names_it(model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    with pytest.raises(ModelFileError, match=rf"'{re.escape(str(notes))}' is a file, not a folder"):
        model.save(notes / "model.pt")
    with pytest.raises(ModelFileError, match=rf"'{re.escape(str(notes))}' is a file"):
        model.save(notes / "deeper" / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_failed_save_leaves_no_temporary_file(model, tmp_path):
    (tmp_path / "model.pt").mkdir()  # the target is a folder: the final rename fails
    with pytest.raises(ModelFileError, match="model.pt"):
        model.save(tmp_path / "model.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert list((tmp_path / "model.pt").iterdir()) == []


def test_a_save_failing_midway_keeps_the_previous_model(model, tmp_path, monkeypatch):
    path = model.save(tmp_path / "model.pt")
    before = path.read_bytes()

    def disk_full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(ModelFileError, match="No space left"):
        dataclasses.replace(model, shrinkage={"As": 0.5}).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    assert path.read_bytes() == before


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


def test_a_failed_write_leaves_the_old_file_and_no_temporary(model, saved, monkeypatch):
    before = saved.read_bytes()

    def broken(obj, fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(ModelFileError, match=r"model\.pt.*cannot be written.*disk full"):
        dataclasses.replace(model, shrinkage={"As": 0.5}).save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_write_file_atomically_takes_a_writer_text_or_bytes(tmp_path):
    from geochem_sr.io.files import write_file_atomically

    path = tmp_path / "f.bin"
    assert write_file_atomically(path, lambda fh: fh.write(b"\x00\x01")) == path
    assert path.read_bytes() == b"\x00\x01"
    write_file_atomically(path, "é")
    assert path.read_text(encoding="utf-8") == "é"

    def fails(fh):
        fh.write(b"x")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        write_file_atomically(path, fails)
    assert path.read_text(encoding="utf-8") == "é" and len(list(tmp_path.iterdir())) == 1


def test_identity_of_metadata_already_built_is_the_identity(model):
    meta = model.metadata()
    assert model.identity(meta) == model.identity()
    assert meta == model.metadata()  # not changed


def test_summary_says_where_its_scores_come_from_and_flags_harm(model):
    """Before calibration the table is the validation blocks'; after, the test blocks',
    and an element made worse than the sparse map is flagged on its line."""
    import copy
    import dataclasses

    assert "scores on the validation blocks" in model.summary()
    validation = copy.deepcopy(model.validation)
    validation["calibration"] = {"measured_on": "test blocks"}
    el = model.elements[0]
    validation["per_element"][el]["gain"] = -0.05
    worse = dataclasses.replace(model, validation=validation)
    text = worse.summary()
    assert "scores on the test blocks (never trained on, not used for calibration)" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(el))
    assert line.endswith("<- worse than the sparse map")
    for ln in (ln for ln in text.splitlines() if "<- worse" in ln):  # only the worse ones
        assert validation["per_element"][ln.split()[0]]["gain"] < -0.01
