"""Training loop: learning, best-epoch selection, early stopping, checkpoint/resume, seeds."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.errors import DataError, ModelFileError, ModelMismatchError, ParameterError
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import BlockSplitter, prepare_training_data, windows_mask
from geochem_sr.training import CHECKPOINT_FORMAT, TrainConfig, predict_patches, train
from geochem_sr.training.losses import get_loss

# one-epoch runs often do not beat "no change" yet, which train() says with a warning
pytestmark = [pytest.mark.filterwarnings("ignore:validation. the best validation loss"),
              pytest.mark.usefixtures("one_torch_thread")]

INPUTS = "geochem+terrain+geology"
TINY_SRCNN = {"features": 8, "kernel_sizes": (3, 1, 3)}
# epochs-long runs on a few dozen 16x16 patches; lr 1e-2 so that a few epochs learn
FAST = {"network": "srcnn", "inputs": INPUTS, "batch_size": 8, "learning_rate": 1e-2,
        "loss": "mse", "network_kwargs": TINY_SRCNN, "stride": 16, "progress": False}


def learnable_survey(n: int = 96, elements=("As", "Cu"), seed: int = 0,
                     n_embedding: int = 3) -> xr.Dataset:
    """A survey whose residual is learnable from the inputs.

    ``log10(hr) = log10(lr) + a_el * tanh(z(slope)) + 0.1 * (unit - 0.5)``: the dense map
    differs from the sparse one by a function of slope and geology, which the networks see.
    """
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000.0, 4000000.0, 500000.0 + n * 50, 4000000.0 + n * 50), 50.0,
                         "EPSG:32650")
    elev = ndimage.gaussian_filter(rng.normal(size=(n, n)), 4) * 400 + 3000
    gy, gx = np.gradient(elev, 50.0)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    aspect = (np.degrees(np.arctan2(-gx, gy)) + 360) % 360
    z = np.tanh((slope - slope.mean()) / slope.std())
    units = np.where(ndimage.gaussian_filter(rng.normal(size=(n, n)), 8) > 0, 1, 0)
    vectors = rng.normal(size=(2, n_embedding)).round(4)
    emb = np.moveaxis(vectors[units], -1, 0)
    loglr = np.stack([ndimage.gaussian_filter(rng.normal(size=(n, n)), 6) * 3 + 1
                      for _ in elements])
    amp = np.linspace(0.3, -0.2, len(elements))[:, None, None]
    loghr = loglr + amp * z[None] + 0.1 * (units[None] - 0.5)
    dims, grid = (schema.ELEMENT, schema.Y, schema.X), (schema.Y, schema.X)
    ds = g.assign({
        schema.LR: (dims, (10**loglr).astype("float32")),
        schema.HR: (dims, (10**loghr).astype("float32")),
        schema.ELEVATION: (grid, elev.astype("float32")),
        schema.SLOPE: (grid, slope.astype("float32")),
        schema.ASPECT: (grid, aspect.astype("float32")),
        schema.LITHOLOGY: (grid, units.astype("int16")),
        schema.GEOLOGY_EMBEDDING: ((schema.EMBEDDING, *grid), emb.astype("float32")),
    })
    ds.attrs[schema.ATTR_GEOLOGY_VOCAB] = json.dumps(
        {"units": ["granite", "schist"], "vectors": vectors.tolist()})
    unit_names = [schema.DEFAULT_UNITS.get(e, "ppm") for e in elements]
    return ds.assign_coords({schema.ELEMENT: list(elements),
                             schema.ELEMENT_UNITS: (schema.ELEMENT, unit_names)})



@pytest.fixture(scope="module")
def survey() -> xr.Dataset:
    return learnable_survey()


@pytest.fixture(scope="module")
def splitter() -> BlockSplitter:
    return BlockSplitter(32, seed=0)  # 3 x 3 blocks of 32 cells


@pytest.fixture(scope="module")
def data(survey, splitter):
    return prepare_training_data(survey, INPUTS, splitter=splitter, patch_size=16, stride=16)


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _losses(history: list[dict]) -> list[tuple]:
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["val_rmse"], h["lr"])
            for h in history]


def _val_loss(model: GeoSRModel, dataset, loss: str = "mse", zero: bool = False) -> float:
    """Patch-weighted validation loss of a model (or of a zero residual), recomputed here."""
    fn = get_loss(loss)
    total, n = 0.0, 0
    for i in range(len(dataset)):
        x, y, mask = dataset[i]
        pred = torch.zeros_like(y)[None] if zero else predict_patches(model, x[None])
        total += float(fn(pred, y[None], mask[None]))
        n += 1
    return total / n


# --------------------------------------------------------------------------- learning
def test_few_epochs_beat_zero_residual(survey, data):
    model = train(survey, epochs=4, patience=None, data=data, **FAST)
    zero = _val_loss(model, data.val, zero=True)
    assert model.validation["val_loss_zero"] == pytest.approx(zero, rel=1e-5)
    assert model.validation["val_loss"] < 0.6 * zero
    # the report is on the validation cells: rmse_lr is the residual's RMS there
    cells = windows_mask(data.val_windows, (survey.sizes["y"], survey.sizes["x"]))
    residual = np.log10(survey.hr.values) - np.log10(survey.lr.values)
    for k, el in enumerate(model.elements):
        rep = model.validation["per_element"][el]
        assert rep["cells"] == int(cells.sum())
        assert rep["rmse_lr"] == pytest.approx(np.sqrt(np.mean(residual[k][cells] ** 2)),
                                               rel=1e-4)
        assert rep["rmse_pred"] < rep["rmse_lr"]
        assert rep["gain"] == pytest.approx(1 - rep["rmse_pred"] / rep["rmse_lr"])


def test_model_carries_what_applying_it_needs(survey, data):
    model = train(survey, epochs=1, data=data, seed=3, **FAST)
    assert model.network_name == "srcnn"
    assert model.network_config["features"] == 8
    assert model.channels == data.channels and len(model.channels) == 2 + 4 + 3
    assert model.elements == ["As", "Cu"]
    assert model.units == {"As": "ppm", "Cu": "ppm"}
    assert set(model.norm_stats) == set(model.channels)
    assert model.geology_vocabulary == survey.attrs[schema.ATTR_GEOLOGY_VOCAB]
    assert model.inputs == INPUTS and model.patch_size == 16
    assert set(model.history[0]) == {"epoch", "train_loss", "val_loss", "val_rmse", "lr",
                                     "seconds"}
    record = model.training
    assert record.seed == 3 and record.epochs_run == 1
    assert record.loss == "mse" and record.batch_size == 8
    assert record.stride == 16
    split = record.split
    assert split["patches"] == {"train": len(data.train), "val": len(data.val),
                                "test": len(data.test)}
    assert split["block_size_cells"] == [32, 32]
    json.dumps(model.metadata())  # everything JSON-serialisable


def test_geology_vocabulary_only_with_geology(survey, splitter):
    model = train(survey, epochs=1, splitter=splitter, patch_size=16,
                  **{**FAST, "inputs": "geochem+terrain"})
    assert model.geology_vocabulary is None
    assert model.channels == ["lr:As", "lr:Cu", "elevation", "slope", "aspect_sin",
                              "aspect_cos"]


# --------------------------------------------------------------------------- best / early stop
def test_best_epoch_weights_are_returned(survey, data):
    model = train(survey, epochs=6, patience=None, data=data, **FAST)
    val = [h["val_loss"] for h in model.history]
    best = int(np.argmin(val)) + 1
    assert best < len(val), "this set-up is meant to overshoot after its best epoch"
    assert model.validation["best_epoch"] == best
    assert model.validation["val_loss"] == min(val)
    # the returned weights give the best epoch's validation loss, not the last one's
    assert _val_loss(model, data.val) == pytest.approx(min(val), rel=1e-4)
    assert _val_loss(model, data.val) != pytest.approx(val[-1], rel=1e-3)


def test_early_stopping_after_patience(survey, data):
    full = train(survey, epochs=6, patience=None, data=data, **FAST)
    val = [h["val_loss"] for h in full.history]
    # patience 1: stop after the first epoch that does not improve on the best so far
    stop = next(e for e in range(2, 7) if val[e - 1] >= min(val[: e - 1]))
    best = int(np.argmin(val[:stop])) + 1
    stopped = train(survey, epochs=6, patience=1, data=data, **FAST)
    assert stopped.training.epochs_run == stop < 6 and stopped.training.stopped_early
    assert stopped.validation["best_epoch"] == best
    assert _losses(stopped.history) == _losses(full.history[:stop])
    if best == full.validation["best_epoch"]:
        assert _weights_equal(stopped.state_dict, full.state_dict)


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_weights_other_seed_other_weights(survey, splitter):
    kw = {**FAST, "epochs": 2, "splitter": splitter, "patch_size": 16}
    a = train(survey, seed=0, **kw)
    b = train(survey, seed=0, **kw)
    c = train(survey, seed=1, **kw)
    assert _weights_equal(a.state_dict, b.state_dict)
    assert _losses(a.history) == _losses(b.history)
    assert not _weights_equal(a.state_dict, c.state_dict)


def test_augmentation_switch_and_data_left_as_given(survey, data):
    plain = train(survey, epochs=2, data=data, augment=False, **FAST)
    assert data.train.augment  # restored after training
    augmented = train(survey, epochs=2, data=data, **FAST)
    assert not _weights_equal(plain.state_dict, augmented.state_dict)


def test_global_random_state_untouched(survey, data):
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002
    expected_t, expected_n = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002
    train(survey, epochs=1, data=data, **FAST)
    assert torch.equal(torch.rand(3), expected_t)
    assert np.array_equal(np.random.rand(3), expected_n)  # noqa: NPY002
    assert not torch.are_deterministic_algorithms_enabled()


# --------------------------------------------------------------------------- checkpoints
class Killed(Exception):
    """Stands for the process dying after an epoch's checkpoint was written."""


def _kill_after(epoch: int):
    def callback(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Killed

    return callback


@pytest.mark.parametrize("network, kwargs", [
    ("unet", {"base_channels": 8, "depth": 2}),            # BatchNorm buffers, max-pooling
    ("multilevel_unet", {"base_channels": 16}),           # the paper's net, channels_last
])
def test_kill_and_resume_is_bit_identical(survey, data, tmp_path, network, kwargs):
    kw = {**FAST, "network": network, "network_kwargs": kwargs, "loss": "mse+ssim",
          "epochs": 4, "patience": None, "data": data, "seed": 5}
    straight = train(survey, checkpoint=tmp_path / "a.ckpt", **kw)
    ckpt = tmp_path / "b.ckpt"
    with pytest.raises(Killed):
        train(survey, checkpoint=ckpt, callback=_kill_after(2), **kw)
    state = torch.load(ckpt, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["epoch"] == 2
    epochs_seen = []
    resumed = train(survey, checkpoint=ckpt, callback=lambda r: epochs_seen.append(r["epoch"]),
                    **kw)
    assert epochs_seen == [3, 4]  # continued, did not start over
    assert _weights_equal(resumed.state_dict, straight.state_dict)
    assert _losses(resumed.history) == _losses(straight.history)
    assert resumed.validation == straight.validation


def test_finished_checkpoint_is_not_trained_again(survey, data, tmp_path):
    kw = {**FAST, "epochs": 2, "data": data}
    first = train(survey, checkpoint=tmp_path / "c.ckpt", **kw)
    calls = []
    again = train(survey, checkpoint=tmp_path / "c.ckpt", callback=calls.append, **kw)
    assert calls == [] and _weights_equal(again.state_dict, first.state_dict)
    # more epochs continue from where it stopped
    longer = train(survey, checkpoint=tmp_path / "c.ckpt", callback=calls.append,
                   **{**kw, "epochs": 3})
    assert [r["epoch"] for r in calls] == [3] and len(longer.history) == 3
    fresh = train(survey, checkpoint=tmp_path / "c.ckpt", resume=False,
                  **{**kw, "epochs": 3})
    assert _weights_equal(fresh.state_dict, longer.state_dict)


def test_checkpoint_of_another_setup_is_refused(survey, data, tmp_path):
    ckpt = tmp_path / "d.ckpt"
    train(survey, epochs=1, checkpoint=ckpt, data=data, **FAST)
    with pytest.raises(ModelMismatchError, match="lr"):
        train(survey, epochs=2, checkpoint=ckpt, data=data, **{**FAST, "learning_rate": 5e-3})
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="cannot be read"):
        train(survey, epochs=2, checkpoint=ckpt, data=data, **FAST)


# --------------------------------------------------------------------------- interface
def test_progress_bar_shows_metrics(survey, data, capsys, monkeypatch):
    import tqdm.auto

    class WideBar(tqdm.auto.tqdm):
        """A bar as wide as its text: tqdm cuts the bar (postfix first) to the width of the
        terminal, of ``TQDM_NCOLS``, or (older tqdm) of ``COLUMNS``, whatever runs pytest."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "ncols": 1000})

    monkeypatch.setattr(tqdm.auto, "tqdm", WideBar)
    with warnings.catch_warnings():  # shown on stderr when pytest does not record them
        warnings.simplefilter("ignore")
        train(survey, epochs=1, data=data, **{**FAST, "progress": True})
        err = capsys.readouterr().err
        assert "val_rmse=" in err and "loss=" in err and "best=1" in err
        train(survey, epochs=1, data=data, **FAST)
        assert capsys.readouterr().err == ""


def test_bad_arguments_are_refused(survey, data, splitter):
    with pytest.raises(ParameterError, match="epochs"):
        train(survey, epochs=0, data=data, **FAST)
    with pytest.raises(ParameterError, match="loss"):
        train(survey, epochs=1, data=data, **{**FAST, "loss": "huber"})
    with pytest.raises(ParameterError, match="network.*resnet"):
        train(survey, epochs=1, data=data, **{**FAST, "network": "resnet"})
    with pytest.raises(ParameterError, match="learning_rate"):
        train(survey, epochs=1, data=data, **{**FAST, "learning_rate": 0.0})
    with pytest.raises(TypeError, match="epoch_count"):
        train(survey, epoch_count=1, data=data, **FAST)
    no_val = BlockSplitter(32, fractions=(0.8, 0.0, 0.2), seed=0)
    with pytest.raises(DataError, match="validation"):
        train(survey, epochs=1, splitter=no_val, patch_size=16, **FAST)


def test_warns_when_not_better_than_no_change(survey, data):
    with pytest.warns(UserWarning, match="does not improve on the sparse map"):
        model = train(survey, epochs=1, data=data, **{**FAST, "learning_rate": 1e-3})
    assert model.validation["val_loss"] >= model.validation["val_loss_zero"]


def test_predict_patches_shape_and_check(survey, data):
    model = train(survey, epochs=1, data=data, **FAST)
    x = torch.stack([data.val[i][0] for i in range(3)])
    out = predict_patches(model, x)
    assert out.shape == (3, 2, 16, 16) and out.dtype == torch.float32
    with pytest.raises(ParameterError, match="channels"):
        predict_patches(model, x[:, :4])


# --------------------------------------------------------------------------- settings
def test_config_holds_the_settings_and_checks_them():
    config = TrainConfig(epochs=5, learning_rate=1e-3)
    assert (config.epochs, config.learning_rate, config.batch_size) == (5, 1e-3, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 6  # type: ignore[misc]
    assert TrainConfig.resolve(config, seed=4) == dataclasses.replace(config, seed=4)
    assert TrainConfig.resolve(elements=["As"]).elements == ("As",)
    bad = {"epochs": 0, "batch_size": 2.5, "patience": 0, "learning_rate": -1.0,
           "lr_gamma": 1.5, "weight_decay": 1.0, "target_scale": "std", "ensemble": True,
           "stride": 0, "seed": "0", "network_kwargs": ["base_channels"]}
    for name, value in bad.items():
        with pytest.raises(ParameterError, match=name):
            TrainConfig(**{name: value})
    with pytest.raises(TypeError, match="epoch_count"):
        TrainConfig.resolve(epoch_count=3)
    # numpy integers and numbers count (geochem_sr.checks); floats are no counts
    numpy_made = TrainConfig(epochs=np.int64(5), seed=np.int32(2), learning_rate=np.float32(1e-3))
    assert numpy_made.epochs == 5 and numpy_made.seed == 2
    with pytest.raises(ParameterError, match="epochs: expected a positive integer"):
        TrainConfig(epochs=5.0)
    with pytest.raises(ParameterError, match="patience: expected a positive integer or None"):
        TrainConfig(patience=np.bool_(True))


def test_a_config_trains_as_its_keywords_do(survey, data):
    settings = {k: v for k, v in FAST.items() if k not in ("network", "inputs")}
    by_keywords = train(survey, epochs=1, data=data, **FAST)
    config = TrainConfig(epochs=3, **settings)
    by_config = train(survey, "srcnn", INPUTS, config=config, epochs=1, data=data)
    assert _weights_equal(by_config.state_dict, by_keywords.state_dict)
    assert _losses(by_config.history) == _losses(by_keywords.history)


def test_earlier_keywords_still_work_with_a_warning(survey, data):
    new = train(survey, epochs=1, data=data, **FAST)
    old = {**{k: v for k, v in FAST.items() if k not in
              ("network", "learning_rate", "network_kwargs")},
           "model": "srcnn", "lr": FAST["learning_rate"], "model_kwargs": TINY_SRCNN}
    with pytest.warns(DeprecationWarning) as caught:
        earlier = train(survey, epochs=1, data=data, **old)
    said = " ".join(str(w.message) for w in caught)
    assert "network=" in said and "learning_rate=" in said and "network_kwargs=" in said
    assert _weights_equal(earlier.state_dict, new.state_dict)
    with pytest.raises(TypeError, match="lr= and learning_rate="), \
            pytest.warns(DeprecationWarning):
        train(survey, epochs=1, data=data, lr=1e-2, **FAST)


def test_the_accessor_trains_a_network_by_name(survey, data):
    model = survey.geosr.train(epochs=1, data=data, **FAST)
    assert model.network_name == "srcnn" and model.training.epochs_run == 1
