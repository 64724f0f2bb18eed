"""Tiled, lazy, resumable super-resolution (geochem_sr.inference).

Small regions (100 x 130 cells), tiny networks with random weights, tiles of 32-64 cells.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from conftest import make_survey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geochem_sr as gs
from geochem_sr import inference, schema
from geochem_sr.errors import GeoSRError, IncompleteStoreError, ModelMismatchError
from geochem_sr.features import channel_names, fit_normalisation, stack_inputs
from geochem_sr.inference import geometry, network, stores, windows
from geochem_sr.models import GeoSRModel

torch = pytest.importorskip("torch")

NY, NX = 100, 130
# (network, config): a U-Net with 2 and 3 stride-2 steps (BatchNorm, alignment matters) and
# SRCNN (no stride, receptive field 13)
NETS = {
    "unet2": ("unet", {"depth": 2, "base_channels": 4}),
    "unet3": ("unet", {"depth": 3, "base_channels": 4}),
    "srcnn": ("srcnn", {"features": 8}),
    "mlu": ("multilevel_unet", {"base_channels": 2}),  # tile_reach 64 < half its field
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: faster on a shared 2-core machine, and the same as in workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _survey(ny: int = NY, nx: int = NX, seed: int = 0) -> xr.Dataset:
    ds = make_survey(ny, nx, seed=seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    slope = (10 + 5 * np.sin(yy / 7.0) * np.cos(xx / 9.0)).astype("float32")
    aspect = np.degrees(np.arctan2(np.sin(yy / 11.0), np.cos(xx / 13.0))) % 360
    aspect = aspect.astype("float32")
    aspect[3:6, 4:9] = np.nan  # flat cells (elevation present): aspect vector (0, 0)
    return ds.assign(slope=((schema.Y, schema.X), slope),
                     aspect=((schema.Y, schema.X), aspect))


def _model(ds: xr.Dataset, key: str = "unet2", inputs: str = "geochem+terrain",
           seed: int = 0, **over) -> GeoSRModel:
    """A GeoSRModel with random weights (output layer included, so it predicts something)."""
    name, config = NETS[key]
    config = {**config, **over}
    elements = [str(e) for e in ds[schema.ELEMENT].values]
    chans = channel_names(inputs, elements)
    torch.manual_seed(seed)
    net = gs.models.get_model(name, in_channels=len(chans), out_channels=len(elements),
                              **config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0.0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    stats = fit_normalisation(stack_inputs(ds, chans))
    return GeoSRModel(network_name=name, network_config=net.config,
                      state_dict={k: v.clone() for k, v in net.state_dict().items()},
                      inputs=inputs, channels=chans, elements=elements,
                      units=schema.units_of(ds), norm_stats=stats)


def _inputs(ds: xr.Dataset, model: GeoSRModel) -> np.ndarray:
    return stack_inputs(ds, model.channels, model.norm_stats).values


@pytest.fixture(scope="module")
def survey() -> xr.Dataset:
    return _survey()


class _Counter:
    """Counts calls of a module function (a wrapper, nothing mocked)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> None:
        self.n = 0
        orig = getattr(obj, name)

        def wrapped(*args, **kwargs):
            self.n += 1
            return orig(*args, **kwargs)

        monkeypatch.setattr(obj, name, wrapped)


# --------------------------------------------------------------------------- tiling laws
@pytest.mark.parametrize("key", list(NETS))
def test_tiled_equals_untiled_everywhere(survey, key):
    model = _model(survey, key)
    if key == "mlu":  # whole tiles with the 64-cell halo of its lattice
        model = dataclasses.replace(model, prediction=dataclasses.replace(
            model.prediction, context="tile"))
        assert inference.default_halo(model) == 64
    x = _inputs(survey, model)
    tiled, _ = inference.predict_array(model, x, tile=64)
    whole, _ = inference.predict_array(model, x, tile=1024)  # one window
    assert tiled.shape == (3, NY, NX)
    assert np.isfinite(whole).all()
    assert np.nanstd(whole) > 0.01  # the network does something
    # equal to float tolerance, the outer border included (both pad it by reflection)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_tiled_equals_untiled_with_tta(survey):
    model = _model(survey, "unet3")
    x = _inputs(survey, model)
    r_t, s_t = inference.predict_array(model, x, tile=64, tta=True)
    r_w, s_w = inference.predict_array(model, x, tile=1024, tta=True)
    np.testing.assert_allclose(r_t, r_w, atol=1e-5)
    np.testing.assert_allclose(s_t, s_w, atol=1e-5)
    assert np.nanmean(s_w) > 1e-4  # the 8 orientations do not all agree


_MODELS: dict[str, GeoSRModel] = {}


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ny=st.integers(1, 70), nx=st.integers(1, 70), tile=st.sampled_from([4, 8, 12, 32]),
       key=st.sampled_from(["unet2", "srcnn"]))
def test_tiled_equals_untiled_for_any_shape_and_tile(survey, ny, nx, tile, key):
    model = _MODELS.get(key) or _MODELS.setdefault(key, _model(survey, key))
    x = _inputs(survey, model)[:, 10:10 + ny, 20:20 + nx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tiled, _ = inference.predict_array(model, x, tile=tile)
    whole, _ = inference.predict_array(model, x, tile=128)
    assert tiled.shape == (3, ny, nx) and np.isfinite(tiled).all()
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_halo_below_reach_warns_and_is_approximate(survey):
    model = _model(survey, "unet3")
    x = _inputs(survey, model)
    whole, _ = inference.predict_array(model, x, tile=1024)
    with pytest.warns(UserWarning, match="below the network's reach"):
        short, _ = inference.predict_array(model, x, tile=32, halo=8)
    assert np.abs(short - whole).max() > 1e-5  # the halo is what makes tiles exact


def test_blend_weights_are_a_smooth_partition_of_unity():
    bounds = geometry.bounds(geometry.chunk_sizes(150, 32, 8))
    total = np.zeros(150)
    for lo, hi, w in windows.axis_weights(bounds, 8):
        total[lo:hi] += w
        assert np.abs(np.diff(w)).max() <= np.pi / 16 + 1e-9  # no step inside a window
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_dask_path_equals_predict_array(survey):
    model = _model(survey, "unet2")
    x = _inputs(survey, model)
    r, s = inference.predict_array(model, x, tile=1024, tta=True)
    pred = inference.super_resolve(survey, model, tile=64).compute()
    assert pred[schema.RESIDUAL_PRED].chunks is None
    np.testing.assert_allclose(pred[schema.RESIDUAL_PRED].values, r, atol=1e-5)
    np.testing.assert_allclose(pred[schema.HR_PRED_STD].values, s, atol=1e-5)


@pytest.mark.filterwarnings("ignore:overflow encountered")  # random weights, 10**large
@pytest.mark.parametrize("key", ["unet3", "srcnn"])
def test_constant_input_gives_a_seam_free_output(survey, key):
    """A constant map in, a map without seams out.

    A network with stride-2 up-sampling answers a constant input with a pattern of period
    ``size_multiple`` (its transposed convolutions weigh the sub-cells differently), a
    network without stride with a constant; predicted from patch-size sub-windows, the
    pattern's period is the sub-window lattice's (the alignment multiple). A seam would
    break that periodicity.
    """
    model = _model(survey, key)
    m = geometry.alignment(model)[0]
    x = np.ones((len(model.channels), NY, NX), dtype="float32")
    x *= np.linspace(-1, 1, len(model.channels), dtype="float32")[:, None, None]

    def periodic(out: np.ndarray) -> float:
        return max(np.abs(out[:, m:, :] - out[:, :-m, :]).max(),
                   np.abs(out[:, :, m:] - out[:, :, :-m]).max())

    res, std = inference.predict_array(model, x, tile=32, tta=True)
    seams_x, seams_y = [31, 63, 95], [31, 63]  # last cell of each tile core
    for out in (res, std):
        assert periodic(out) <= 1e-5
        # the step across a seam is the step at the same phase elsewhere
        dx, dy = np.diff(out, axis=2), np.diff(out, axis=1)
        inside_x, inside_y = [c - 16 for c in seams_x], [r - 16 for r in seams_y]
        np.testing.assert_allclose(dx[:, :, seams_x], dx[:, :, inside_x], atol=1e-5)
        np.testing.assert_allclose(dy[:, seams_y, :], dy[:, inside_y, :], atol=1e-5)
    if geometry.geometry(model).size_multiple == 1:  # whole tiles: a constant
        whole = dataclasses.replace(
            model, prediction=dataclasses.replace(model.prediction, context="tile"))
        res, _ = inference.predict_array(whole, x, tile=32)
        assert np.ptp(res, axis=(1, 2)).max() <= 1e-5
    # and the same through Dask chunks
    ds = survey.copy()
    for name in ("lr", "elevation", "slope", "aspect"):
        ds[name] = xr.full_like(ds[name], 7.0)
    pred = inference.super_resolve(ds, model, tile=32, uncertainty=False).compute()
    assert periodic(pred[schema.RESIDUAL_PRED].values) <= 1e-5


def test_nan_hole_stays_in_its_cells(survey):
    model = _model(survey, "unet2")
    ds = survey.copy()
    lr = ds[schema.LR].values.copy()
    lr[1, 40:52, 60:75] = np.nan  # one element missing -> the cell is off coverage
    lr[:, 0:3, 0:5] = np.nan  # and a hole at the corner
    ds[schema.LR] = (ds[schema.LR].dims, lr)
    hole = np.isnan(lr).any(axis=0)
    pred = inference.super_resolve(ds, model, tile=32).compute()
    std = pred[schema.HR_PRED_STD].values
    assert np.isnan(std[:, hole]).all() and np.isfinite(std[:, ~hole]).all()
    # where the network cannot predict, an element with a sparse value keeps it (residual 0)
    hr, res = pred[schema.HR_PRED].values, pred[schema.RESIDUAL_PRED].values
    np.testing.assert_array_equal(np.isnan(hr), np.isnan(lr))
    np.testing.assert_array_equal(hr[:, hole], lr[:, hole])
    assert (res[:, hole][np.isfinite(lr[:, hole])] == 0).all()
    assert np.isfinite(hr[:, ~hole]).all() and np.isfinite(res[:, ~hole]).all()
    res, _ = inference.predict_array(model, _inputs(ds, model), tile=32)
    assert np.array_equal(np.isnan(res).any(axis=0), hole)


@pytest.mark.parametrize("shape", [(20, 27), (5, 7)])
def test_region_smaller_than_one_tile(shape):
    ds = _survey(*shape, seed=3)
    model = _model(ds, "unet3")
    res, _ = inference.predict_array(model, _inputs(ds, model), tile=64)
    pred = inference.super_resolve(ds, model, tile=64, uncertainty=False)
    assert pred[schema.HR_PRED].shape == (3, *shape)
    out = pred[schema.RESIDUAL_PRED].values
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, res, atol=1e-5)


# --------------------------------------------------------------------------- the Dataset
def test_super_resolve_is_lazy_and_builds_the_network_once(survey, monkeypatch):
    model = _model(survey, "unet2")
    network.clear_cache()
    forwards = _Counter(monkeypatch, network, "forward")
    builds = _Counter(monkeypatch, GeoSRModel, "build_network")
    pred = inference.super_resolve(survey, model, tile=32)
    for name in (schema.HR_PRED, schema.RESIDUAL_PRED, schema.HR_PRED_STD):
        assert isinstance(pred[name].data, dsa.Array), name
    assert forwards.n == 0 and builds.n == 0
    assert pred.chunks[schema.Y] == (32, 32, 36) and pred.chunks[schema.X] == (32, 32, 32, 34)
    pred.compute(scheduler="threads")
    assert forwards.n == 12 * 8  # 12 tiles, 8 orientations each
    assert builds.n == 1  # one network for all the chunks


def test_model_mismatch_raises_before_any_work(survey, monkeypatch):
    model = _model(survey, "srcnn")
    forwards = _Counter(monkeypatch, network, "forward")
    with pytest.raises(ModelMismatchError, match="slope"):
        inference.super_resolve(survey.drop_vars("slope"), model)
    with pytest.raises(ModelMismatchError, match="elements"):
        inference.super_resolve(survey.sel(element=["As", "Cu"]), model)
    other = _model(survey, "srcnn", inputs="geochem")  # trained on other channels
    with pytest.raises(GeoSRError, match="channels"):
        inference.predict_array(other, _inputs(survey, model))
    assert forwards.n == 0


def test_shrinkage_std_scale_and_units(survey):
    model = _model(survey, "srcnn")
    raw, raw_std = inference.predict_array(model, _inputs(survey, model), tile=64, tta=True)
    model.shrinkage = {"As": 0.0, "Cu": 0.5}
    model.std_scale = {"Au": 2.0}
    floor = float(np.median(raw_std[2]))
    model.prediction = dataclasses.replace(model.prediction, std_floor={"Au": floor})
    pred = inference.super_resolve(survey, model, tile=64).compute()
    lr = survey[schema.LR].values
    hr = pred[schema.HR_PRED].values
    res = pred[schema.RESIDUAL_PRED].values
    assert np.array_equal(hr[0], lr[0])  # shrinkage 0: the sparse map itself
    np.testing.assert_allclose(res[1], 0.5 * raw[1], atol=1e-5)
    np.testing.assert_allclose(res[2], raw[2], atol=1e-5)
    np.testing.assert_allclose(np.log10(hr), np.log10(lr) + res, atol=1e-5)
    std = pred[schema.HR_PRED_STD].values
    # calibrated: std_scale * max(spread, std_floor) (geochem_sr.trust); raw elsewhere
    np.testing.assert_allclose(std[2], 2.0 * np.maximum(raw_std[2], floor), rtol=1e-5)
    np.testing.assert_allclose(std[:2], raw_std[:2], atol=1e-5)
    assert "['As']" in pred.attrs["geochem_sr_shrinkage_note"]
    assert pred.attrs["geochem_sr_calibrated_elements"] == ["Au"]
    assert list(pred[schema.ELEMENT_UNITS].values) == ["ppm", "ppm", "ppb"]
    assert pred.rio.crs == survey.rio.crs


def test_tta_turns_the_aspect_vector_with_the_map():
    ds = _survey(40, 48, seed=5)
    # a pointwise network (1x1 kernels) commutes with rotations of scalar fields...
    geo = _model(ds, "srcnn", inputs="geochem", kernel_sizes=[1, 1, 1])
    x = _inputs(ds, geo)
    plain, _ = inference.predict_array(geo, x)
    mean, spread = inference.predict_array(geo, x, tta=True)
    np.testing.assert_allclose(mean, plain, atol=1e-5)
    assert spread.max() <= 1e-5
    # ...but not with a rotation of the aspect vector, which TTA turns with the map
    ter = _model(ds, "srcnn", inputs="geochem+terrain", kernel_sizes=[1, 1, 1])
    _, spread = inference.predict_array(ter, _inputs(ds, ter), tta=True)
    assert spread.mean() > 1e-3


# --------------------------------------------------------------------------- Zarr
def _with_aoa(ds: xr.Dataset, model: GeoSRModel) -> tuple[xr.Dataset, GeoSRModel]:
    """The survey with a lithology map (granite left, schist right, no unit in a corner) and
    the model with an area-of-applicability reference of 300 cells of its left part, where
    only granite was seen."""
    from scipy.spatial.distance import pdist

    lith = np.zeros((NY, NX), np.int32)
    lith[:, 2 * NX // 3:] = 1
    lith[:10, :10] = -1
    ds = ds.assign(lithology=((schema.Y, schema.X), lith,
                              {"units_json": json.dumps({"0": "granite", "1": "schist"})}))
    feats = _inputs(ds, model)[:, :, :NX // 2].reshape(len(model.channels), -1).T
    feats = feats[np.isfinite(feats).all(axis=1)]
    ref = feats[np.random.default_rng(0).choice(len(feats), 300, replace=False)]
    aoa = {"reference": np.round(ref, 4).tolist(), "mean_distance": float(pdist(ref).mean()),
           "threshold": 0.6, "channels": list(model.channels), "lithology_seen": ["granite"]}
    return ds, dataclasses.replace(model, aoa=aoa)


@pytest.fixture(scope="module")
def store(tmp_path_factory, survey):
    """An input store with lithology, a model file with an area-of-applicability reference,
    and an uninterrupted local run."""
    root = tmp_path_factory.mktemp("inference")
    ds, model = _with_aoa(survey, _model(survey, "srcnn"))
    src = gs.write_survey(ds, root / "in.zarr")
    model_path = model.save(root / "model.pt")
    out = inference.predict_to_zarr(src, root / "full.zarr", model_path, tile=32,
                                    uncertainty=False, progress=False)
    return {"root": root, "src": src, "model": model_path, "full": out}


def _arrays(path: Path) -> dict[str, bytes]:
    """Every file of the data arrays, by relative path (the bytes on disk)."""
    out = {}
    for name in (schema.HR_PRED, schema.RESIDUAL_PRED, schema.HR_PRED_STD,
                 schema.DISSIMILARITY, schema.AOA, "x", "y"):
        d = Path(path) / name
        if d.is_dir():
            for f in sorted(d.iterdir()):
                out[f"{name}/{f.name}"] = f.read_bytes()
    return out


def _attrs_without_time(path: Path) -> dict:
    attrs = json.loads((Path(path) / ".zattrs").read_text())
    attrs.pop("geochem_sr_created")
    return attrs


def test_prediction_store_opens_in_rasterio(store, survey):
    import rasterio

    out = store["full"]
    assert not (out / inference.LEDGER_DIR).exists()
    pred = gs.open_survey(out)  # complete: no marker
    assert schema.ATTR_INCOMPLETE not in pred.attrs
    assert pred.attrs["geochem_sr_model_digest"] == GeoSRModel.load(store["model"]).digest
    assert pred.attrs["geochem_sr_input"] == str(Path(store["src"]).resolve())
    with rasterio.open(f'ZARR:"{out}":/{schema.HR_PRED}') as r:
        assert r.crs == survey.rio.crs
        assert r.transform.almost_equals(survey.rio.transform())
        assert r.count == 3 and (r.height, r.width) == (NY, NX)
        assert np.isnan(r.nodata)
        band = r.read(2)
    np.testing.assert_array_equal(band, pred[schema.HR_PRED].values[1])
    # the store holds what the lazy Dataset computes
    lazy = inference.super_resolve(gs.open_survey(store["src"]),
                                   GeoSRModel.load(store["model"]), tile=32,
                                   uncertainty=False).compute()
    for name in (schema.HR_PRED, schema.RESIDUAL_PRED, schema.DISSIMILARITY, schema.AOA):
        np.testing.assert_array_equal(lazy[name].values, pred[name].values)
        assert lazy[name].attrs == pred[name].attrs
    # each tile judged its own cells: inside where near the reference and granite
    inside = pred[schema.AOA].values
    assert pred[schema.AOA].dtype == bool and 0.2 < inside.mean() < 0.8
    assert not inside[:, 2 * NX // 3:].any() and not inside[:10, :10].any()
    assert inside[10:, :NX // 2].mean() > inside[10:, NX // 2:].mean()
    with rasterio.open(f'ZARR:"{out}":/{schema.DISSIMILARITY}') as r:
        np.testing.assert_array_equal(r.read(1), pred[schema.DISSIMILARITY].values)


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import geochem_sr.inference as inference
    from geochem_sr.inference import network

    torch.set_num_threads(1)
    forward = network.forward

    def slow_forward(*args, **kwargs):  # time to be killed between tiles
        time.sleep(0.4)
        return forward(*args, **kwargs)

    network.forward = slow_forward
    inference.predict_to_zarr(sys.argv[1], sys.argv[2], sys.argv[3], tile=32,
                              uncertainty=False, progress=False)
    """
)


def test_killed_run_resumes_to_an_identical_store(store, monkeypatch):
    root, out = store["root"], store["root"] / "killed.zarr"
    script = root / "run.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(store["src"]), str(out),
                             str(store["model"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ledger = out / inference.LEDGER_DIR
    deadline = time.monotonic() + 120
    try:
        while len(stores.done_tiles(out)) < 2:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the run wrote no tile in 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = len(stores.done_tiles(out))
    assert ledger.is_dir() and 2 <= done < 12
    with pytest.raises(IncompleteStoreError):
        gs.open_survey(out)
    # the same command again computes only the missing tiles
    forwards = _Counter(monkeypatch, network, "forward")
    inference.predict_to_zarr(store["src"], out, store["model"], tile=32, uncertainty=False,
                              progress=False)
    assert forwards.n == 12 - done
    assert not ledger.exists()
    gs.open_survey(out)
    assert _arrays(out) == _arrays(store["full"])
    assert _attrs_without_time(out) == _attrs_without_time(store["full"])
    # running it once more does nothing
    inference.predict_to_zarr(store["src"], out, store["model"], tile=32, uncertainty=False,
                              progress=False)
    assert forwards.n == 12 - done


def test_resume_refuses_another_model_or_input(store, survey, monkeypatch):
    out = store["root"] / "interrupted.zarr"
    forward = network.forward
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("interrupted")
        return forward(*args, **kwargs)

    monkeypatch.setattr(network, "forward", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        inference.predict_to_zarr(store["src"], out, store["model"], tile=32,
                                  uncertainty=False, progress=False)
    monkeypatch.setattr(network, "forward", forward)
    assert len(stores.done_tiles(out)) == 3
    other = _model(survey, "srcnn", seed=1)
    with pytest.raises(ModelMismatchError, match="model_digest"):
        inference.predict_to_zarr(store["src"], out, other, tile=32, uncertainty=False,
                                  progress=False)
    src2 = gs.write_survey(survey.isel(y=slice(0, 90)), store["root"] / "in2.zarr")
    with pytest.raises(GeoSRError, match="input"):
        inference.predict_to_zarr(src2, out, store["model"], tile=32, uncertainty=False,
                                  progress=False)
    with pytest.raises(GeoSRError, match="tile"):
        inference.predict_to_zarr(store["src"], out, store["model"], tile=64,
                                  uncertainty=False, progress=False)
    # the same input path rewritten with other values (same grid, variables, metadata)
    changed, out2 = store["root"] / "changed.zarr", store["root"] / "interrupted2.zarr"
    shutil.copytree(store["src"], changed)
    calls["n"] = 0
    monkeypatch.setattr(network, "forward", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        inference.predict_to_zarr(changed, out2, store["model"], tile=32,
                                  uncertainty=False, progress=False)
    monkeypatch.setattr(network, "forward", forward)
    rewritten = gs.open_survey(changed).load()
    rewritten["lr"] = rewritten["lr"] * 3
    gs.write_survey(rewritten, changed)
    meta = [json.loads((p / ".zmetadata").read_text())["metadata"]
            for p in (changed, store["src"])]
    assert meta[0] == meta[1]
    shutil.copy(store["src"] / ".zmetadata", changed / ".zmetadata")  # byte for byte the same
    gs.io.write_manifest(changed)
    with pytest.raises(GeoSRError, match="input_fingerprint"):
        inference.predict_to_zarr(changed, out2, store["model"], tile=32, uncertainty=False,
                                  progress=False)
    inference.predict_to_zarr(store["src"], out, store["model"], tile=32, uncertainty=False,
                              progress=False)
    assert _arrays(out) == _arrays(store["full"])


def test_local_cluster_equals_threaded_run(store):
    from distributed import Client, LocalCluster

    out = store["root"] / "cluster.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            inference.predict_to_zarr(store["src"], out, store["model"], tile=32,
                                      uncertainty=False, scheduler=client, progress=False)
            # each worker built the network once and ran torch on one thread
            threads = client.run(lambda: __import__("torch").get_num_threads())
            assert set(threads.values()) == {1}
    a, b = gs.open_survey(out), gs.open_survey(store["full"])
    np.testing.assert_array_equal(a[schema.AOA].values, b[schema.AOA].values)
    for name in (schema.HR_PRED, schema.RESIDUAL_PRED, schema.DISSIMILARITY):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6, atol=1e-6)
        assert np.array_equal(np.isnan(a[name].values), np.isnan(b[name].values))


def test_patch_context_sees_only_a_patch_around_each_cell(survey):
    """Predicted from training-size sub-windows, a cell ignores inputs farther than
    ``patch_size`` cells; predicted from whole tiles, a U-Net's cell does not."""
    model = _model(survey, "unet3")
    x = _inputs(survey, model)
    far = x.copy()
    far[:, :, :8] += 3.0  # change the westmost 8 columns
    p = model.patch_size
    base, _ = inference.predict_array(model, x, tile=64)
    moved, _ = inference.predict_array(model, far, tile=64)
    np.testing.assert_allclose(moved[:, :, 8 + p:], base[:, :, 8 + p:], atol=1e-6)
    assert np.abs(moved[:, :, :8] - base[:, :, :8]).max() > 1e-3
    whole = dataclasses.replace(
        model, prediction=dataclasses.replace(model.prediction, context="tile"))
    assert geometry.geometry(whole).reach > p
    base_t, _ = inference.predict_array(whole, x, tile=64)
    moved_t, _ = inference.predict_array(whole, far, tile=64)
    assert np.abs(moved_t[:, :, 8 + p:] - base_t[:, :, 8 + p:]).max() > 1e-6


# --------------------------------------------------------------------------- geology
def test_reembed_applies_the_models_vocabulary_in_memory_and_to_zarr(tmp_path):
    """A dataset embedded with another vocabulary is refused, and predicted after
    re-embedding its lithology with the model's own vocabulary (``reembed=True``): lazily
    and Zarr to Zarr, the same numbers as on a dataset embedded with the model's vocabulary."""
    from geochem_sr.covariates import GeologyVocabulary, embed_geology

    ds = _survey(48, 64)
    yy, xx = np.mgrid[0:48, 0:64]
    lith = ((yy // 16 + xx // 20) % 3).astype("int16")
    lith[:4, :6] = -1  # no mapped unit: no prediction, the sparse map is kept
    ds = ds.assign(lithology=((schema.Y, schema.X), lith, {
        "flag_values": [0, 1, 2], "flag_meanings": "granite schist marble"}))
    rng = np.random.default_rng(0)
    units = ("granite", "schist", "marble")
    mine, other = (GeologyVocabulary(units, rng.normal(size=(3, 5))) for _ in range(2))
    ds_mine = embed_geology(ds, vocabulary=mine)
    ds_other = embed_geology(ds, vocabulary=other)
    model = dataclasses.replace(_model(ds_mine, "srcnn", inputs="geochem+geology"),
                                geology_vocabulary=mine.to_json())
    with pytest.raises(ModelMismatchError, match="geology_vocabulary"):
        inference.super_resolve(ds_other, model, tile=32, uncertainty=False)
    want = inference.super_resolve(ds_mine, model, tile=32, uncertainty=False).compute()
    got = inference.super_resolve(ds_other, model, tile=32, uncertainty=False,
                                  reembed=True).compute()
    np.testing.assert_array_equal(got[schema.HR_PRED].values, want[schema.HR_PRED].values)
    src = gs.write_survey(ds_other, tmp_path / "other.zarr")
    with pytest.raises(ModelMismatchError, match="geology_vocabulary"):
        inference.predict_to_zarr(src, tmp_path / "refused.zarr", model, tile=32,
                                  uncertainty=False, progress=False)
    out = inference.predict_to_zarr(src, tmp_path / "pred.zarr", model, tile=32,
                                    uncertainty=False, progress=False, reembed=True)
    stored = gs.open_survey(out)
    for name in (schema.HR_PRED, schema.RESIDUAL_PRED):
        np.testing.assert_allclose(stored[name].values, want[name].values, rtol=1e-6,
                                   atol=1e-7)
    np.testing.assert_array_equal(stored[schema.HR_PRED].values[:, :4, :6],  # no unit:
                                  ds[schema.LR].values[:, :4, :6])  # the sparse map kept


def test_calibrated_std_is_one_rule_for_numpy_dask_and_xarray(survey):
    """``std_scale * max(shrinkage * spread, std_floor)`` for calibrated elements, the raw
    spread for the others; the same bits whatever holds the spread."""
    from geochem_sr.inference import calibrated_std
    from geochem_sr.inference.calibration import calibrate_spread

    model = _model(survey, "srcnn")
    spread = np.random.default_rng(0).uniform(0, 0.2, (3, 20, 30)).astype("float32")
    spread[:, 0, 0] = np.nan
    with pytest.raises(ModelMismatchError, match="calibrated"):
        calibrated_std(spread, model)
    assert np.array_equal(calibrate_spread(spread, model), spread, equal_nan=True)
    model.shrinkage, model.std_scale = {"As": 0.5}, {"As": 2.0, "Cu": 1.5}
    model.prediction = dataclasses.replace(model.prediction,
                                           std_floor={"As": 0.05, "Cu": 0.01})
    out = calibrated_std(spread, model)
    expect = np.float32(2.0) * np.maximum(np.float32(0.5) * spread[0], np.float32(0.05))
    assert np.array_equal(out[0], expect, equal_nan=True)
    assert np.array_equal(out[2], spread[2], equal_nan=True)  # Au: not calibrated, raw
    lazy = calibrated_std(dsa.from_array(spread, chunks=(3, 10, 10)), model)
    assert isinstance(lazy, dsa.Array) and lazy.dtype == np.float32  # stays lazy
    lazy = lazy.compute()
    da = calibrated_std(xr.DataArray(spread, dims=(schema.ELEMENT, schema.Y, schema.X),
                                     attrs={"units": "log10"}), model)
    assert np.array_equal(lazy, out, equal_nan=True)
    assert np.array_equal(da.values, out, equal_nan=True) and da.attrs["units"] == "log10"


@pytest.mark.parametrize("key", [*NETS, "multilevel_unet", "ensemble"])
def test_network_geometry_is_that_of_the_built_network(survey, key):
    """The class-attribute shortcut and the built network agree; the model file and the
    tiling read the same values."""
    from geochem_sr.models import get_model, network_geometry, network_tile_reach

    name, config = NETS.get(key, (key, {"base_channels": 8}))
    if key == "ensemble":
        config = {"member": "multilevel_unet", "n": 2, "member_config": {"base_channels": 4}}
    full = {"in_channels": 5, "out_channels": 3, **config}
    net = get_model(name, **full)
    want = (int(getattr(net, "size_multiple", 1) or 1), int(net.receptive_field))
    assert network_geometry(name, full) == want
    assert network_tile_reach(name, full) == net.tile_reach == (
        64 if "multilevel_unet" in (name, config.get("member")) else
        (net.receptive_field - 1) // 2)
    if key in NETS:
        model = _model(survey, key)
        g = geometry.geometry(model)
        assert (g.size_multiple, g.receptive_field) == network_geometry(
            model.network_name, model.network_config)
        assert model.receptive_field == g.receptive_field
        assert g.reach == net.tile_reach


def test_with_prediction_is_the_merge_users_mean_without_warnings(survey):
    """`ds.geosr.with_prediction(pred)`: the prediction's variables on the survey, shared
    coordinates from the survey, no FutureWarning from xarray; another grid is refused."""
    import warnings

    from geochem_sr.errors import GridError

    pred = survey[[schema.LR]].rename({schema.LR: schema.HR_PRED}) * 1.5
    pred = pred.assign_coords({schema.ELEMENT_UNITS: survey[schema.ELEMENT_UNITS]}) \
        if schema.ELEMENT_UNITS in survey.coords else pred
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = survey.geosr.with_prediction(pred)
    assert schema.HR_PRED in both and schema.HR in both
    np.testing.assert_allclose(both[schema.HR_PRED].values, survey[schema.LR].values * 1.5)
    partial = pred.isel({schema.ELEMENT: [1]})  # one element: the others are NaN
    one = survey.geosr.with_prediction(partial)
    assert np.isnan(one[schema.HR_PRED].isel({schema.ELEMENT: 0}).values).all()
    with pytest.raises(GridError, match="prediction vs dataset"):
        survey.geosr.with_prediction(pred.isel({schema.X: slice(1, None)}))


def test_a_tile_job_carrying_an_aoa_rule_pickles_and_hashes(survey):
    import pickle

    from geochem_sr.inference.applicability import aoa_rule

    ds, model = _with_aoa(survey, _model(survey, "srcnn"))
    rule = aoa_rule(ds, model)
    assert rule.units_inside == (0,)  # granite only, the unit seen in training
    job = stores.TileJob("in", "out", "digest", 8, 1, False, None, None, False,
                         ((0, 4),), ((0, 4),), aoa=rule)
    back = pickle.loads(pickle.dumps(job))  # what a cluster worker receives
    np.testing.assert_array_equal(back.aoa.reference, rule.reference)
    assert isinstance(hash(job), int) and job.aoa == rule and back.aoa != rule  # by identity
