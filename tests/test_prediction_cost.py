"""Prediction at the cost of the network (issue 15): training with a margin of input context,
whole-tile prediction, the spread of an ensemble's members, torch's thread count."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import FAST, INPUTS, learnable_survey

from geochem_sr import inference, schema
from geochem_sr.errors import GeoSRError, ParameterError
from geochem_sr.features import stack_inputs
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import BlockSplitter, PatchDataset, prepare_training_data
from geochem_sr.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def survey():
    return learnable_survey()


def test_patch_dataset_margin_is_the_grid_around_the_window_reflected_at_its_border():
    ds = learnable_survey(n=40)
    x = stack_inputs(ds, ["lr:As", "slope"])
    y = ds["hr"].sel(element=["As"])
    windows = [(slice(0, 8), slice(0, 8)), (slice(16, 24), slice(20, 28))]
    plain = PatchDataset(x, y, windows)
    wide = PatchDataset(x, y, windows, margin=4)
    xv = x.values
    # inside the grid: exactly the cells around the window, the target unchanged
    x1, y1, _ = wide[1]
    assert tuple(x1.shape) == (2, 16, 16) and tuple(y1.shape) == (1, 8, 8)
    np.testing.assert_array_equal(x1.numpy(), np.nan_to_num(xv[:, 12:28, 16:32]))
    np.testing.assert_array_equal(y1.numpy(), plain[1][1].numpy())
    # at the grid's corner: reflected, as inference pads a region's border
    x0, _, _ = wide[0]
    want = np.pad(xv[:, 0:12, 0:12], ((0, 0), (4, 0), (4, 0)), mode="reflect")
    np.testing.assert_array_equal(x0.numpy(), np.nan_to_num(want))
    with pytest.raises(GeoSRError, match="margin"):
        PatchDataset(x, y, windows, margin=-1)


def test_training_with_a_margin_predicts_whole_tiles(survey):
    data = prepare_training_data(survey, INPUTS, splitter=BlockSplitter(32, seed=0),
                                 patch_size=16, stride=16, margin=8)
    x, y, mask = data.train[0]
    assert x.shape[-1] == 32 and y.shape[-1] == 16 and mask.shape[-1] == 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = train(survey, epochs=2, patience=None, data=data, seed=0, **FAST)
    assert model.training.margin == 8 and model.prediction.context == "tile"
    assert inference.geometry.patch_context(model) is None
    # the validation report is measured on the windows' centres: as many cells as windows
    rep = model.validation["per_element"]
    assert all(v["cells"] > 0 for v in rep.values())
    inputs = stack_inputs(survey, model.channels, model.norm_stats).values
    tiled, _ = inference.predict_array(model, inputs, tile=32)
    whole, _ = inference.predict_array(model, inputs, tile=256)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_a_margin_the_network_cannot_take_is_refused(survey):
    with pytest.raises(ParameterError, match="margin"):
        train(survey, network="unet", inputs=INPUTS, epochs=1, patch_size=16, margin=3,
              network_kwargs={"depth": 2, "base_channels": 4}, progress=False,
              splitter=BlockSplitter(32, seed=0))
    with pytest.raises(ParameterError, match="margin"):
        train(survey, epochs=1, margin=-2, **FAST)


@pytest.fixture(scope="module")
def ensemble(survey):
    data = prepare_training_data(survey, INPUTS, splitter=BlockSplitter(32, seed=0),
                                 patch_size=16, stride=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ens = train(survey, epochs=2, patience=None, data=data, ensemble=3, seed=1, **FAST)
    # whole tiles: one window per tile, so the blended spread is the members' spread
    return dataclasses.replace(ens, prediction=dataclasses.replace(ens.prediction,
                                                                   context="tile"))


def _member(ens: GeoSRModel, i: int) -> GeoSRModel:
    cfg = ens.network_config
    state = {k.split(".", 2)[2]: v for k, v in ens.state_dict.items()
             if k.startswith(f"members.{i}.")}
    return dataclasses.replace(
        ens, network_name=cfg["member"],
        network_config={"in_channels": cfg["in_channels"], "out_channels": cfg["out_channels"],
                        **cfg["member_config"]},
        state_dict=state, prediction=dataclasses.replace(ens.prediction, spread=None))


def test_ensemble_spread_is_its_members_spread_at_no_extra_forward(survey, ensemble):
    assert ensemble.prediction.spread == "members"
    x = stack_inputs(survey, ensemble.channels, ensemble.norm_stats).values
    calls = []
    orig = inference.network.forward

    def counted(net, xb, device, members=False):
        calls.append(members)
        return orig(net, xb, device, members)

    inference.network.forward = counted
    try:
        res, spread = inference.predict_array(ensemble, x, tile=256, tta=True)
    finally:
        inference.network.forward = orig
    assert calls == [True]  # one pass of the members per window, not 8 orientations
    plain, none = inference.predict_array(ensemble, x, tile=256)
    assert none is None
    np.testing.assert_array_equal(res, plain)  # the uncertainty changes nothing else
    members = np.stack([inference.predict_array(_member(ensemble, i), x, tile=256)[0]
                        for i in range(3)])
    np.testing.assert_allclose(res, members.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(spread, members.std(axis=0), atol=1e-5)
    assert np.nanmean(spread) > 0


def test_members_spread_needs_an_ensemble(survey, ensemble):
    single = _member(ensemble, 0)
    bad = dataclasses.replace(single, prediction=dataclasses.replace(single.prediction,
                                                                     spread="members"))
    with pytest.raises(GeoSRError, match="prediction.spread"):
        bad.check()


def test_in_process_cluster_leaves_the_callers_torch_threads(survey, ensemble, monkeypatch):
    from dask.distributed import Client, LocalCluster

    inference.network.clear_cache()  # the network is built (and threads decided) anew
    monkeypatch.setattr(inference.network, "_THREADS_SET", False)
    torch.set_num_threads(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                              dashboard_address=":0") as cluster, Client(cluster):
                pred = inference.super_resolve(survey, ensemble, tile=32)
                assert np.isfinite(pred[schema.HR_PRED].values).any()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_nearest_distance_is_the_k_d_trees_to_float_precision():
    from scipy.spatial import cKDTree

    from geochem_sr.inference.applicability import nearest_distance

    rng = np.random.default_rng(3)
    ref = rng.normal(5.0, 3.0, size=(300, 24))
    x = np.r_[rng.normal(5.0, 3.0, size=(2000, 24)), ref[:20], ref[20:30] + 1e-5]
    want, _ = cKDTree(ref).query(x)
    got = nearest_distance(x, ref)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(got[2000:2020] < 1e-9)  # reference rows themselves: distance 0


def _random_unet(ds) -> GeoSRModel:
    """A U-Net of depth 3 (receptive field wider than 2 x 16 cells), random weights, whole
    tiles, a 16-cell border."""
    from geochem_sr.features import channel_names, fit_normalisation
    from geochem_sr.models import PredictionSettings, get_model

    elements = [str(e) for e in ds[schema.ELEMENT].values]
    chans = channel_names("geochem+terrain", elements)
    torch.manual_seed(0)
    net = get_model("unet", in_channels=len(chans), out_channels=len(elements), depth=3,
                    base_channels=4)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return GeoSRModel(network_name="unet", network_config=net.config,
                      state_dict={k: v.clone() for k, v in net.state_dict().items()},
                      inputs="geochem+terrain", channels=chans, elements=elements,
                      units=schema.units_of(ds), norm_stats=fit_normalisation(
                          stack_inputs(ds, chans)),
                      prediction=PredictionSettings(context="tile", border=16))


def test_a_narrow_border_is_one_definition_for_every_path(survey, tmp_path):
    """With a border (16) narrower than the halo, numpy tiles, Dask chunks and the Zarr
    writer still give the one whole-region prediction."""
    import geochem_sr as gs

    survey = learnable_survey(n=192)
    model = _random_unet(survey)
    halo = inference.default_halo(model)
    assert inference.geometry.region_border(model, halo) == 16 < halo
    assert len(inference.tile_bounds((192, 192), model, 32)[0]) >= 3
    x = stack_inputs(survey, model.channels, model.norm_stats).values
    whole, _ = inference.predict_array(model, x, tile=512)
    tiled, _ = inference.predict_array(model, x, tile=32)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    lazy = inference.super_resolve(survey, model, tile=32, uncertainty=False)
    np.testing.assert_allclose(lazy[schema.RESIDUAL_PRED].values, whole, atol=1e-5)
    src = gs.write_survey(survey, tmp_path / "in.zarr")
    out = inference.predict_to_zarr(src, tmp_path / "out.zarr", model, tile=32,
                                    uncertainty=False, progress=False)
    np.testing.assert_allclose(gs.open_survey(out)[schema.RESIDUAL_PRED].values, whole,
                               atol=1e-5)
    # the border is part of the definition: the halo's width gives other values at the edge
    other, _ = inference.predict_array(dataclasses.replace(
        model, prediction=dataclasses.replace(model.prediction, border=None)), x, tile=512)
    assert not np.allclose(other[:, :4], whole[:, :4], atol=1e-4)
    np.testing.assert_allclose(other[:, 40:-40, 40:-40], whole[:, 40:-40, 40:-40], atol=1e-5)


def test_default_margin_is_16_cells_or_the_networks_reach():
    from geochem_sr.training import default_margin

    assert default_margin("multilevel_unet", {"base_channels": 16}, 32) == 16
    assert default_margin("unet", {"depth": 2, "base_channels": 4}, 32) == 16
    assert default_margin("srcnn", {}, 32) == 6  # receptive field 13: reach 6
    assert default_margin("srcnn", {"features": 8, "kernel_sizes": (3, 1, 3)}, 16) == 2


def test_default_training_predicts_whole_tiles_and_margin_0_patches(survey):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wide = train(survey, epochs=1, patch_size=16, splitter=BlockSplitter(32, seed=0),
                     **FAST)
        plain = train(survey, epochs=1, patch_size=16, margin=0,
                      splitter=BlockSplitter(32, seed=0), **FAST)
    assert wide.training.margin == 2 and wide.prediction.context == "tile"
    assert wide.prediction.border == 2
    assert plain.training.margin == 0 and plain.prediction.context is None


_THP_SCRIPT = (
    "import os, resource, sys\n"
    "import geochem_sr, torch\n"
    "x = torch.ones(8, 1024, 1024)\n"
    "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "y = x.square()\n"
    "faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0\n"
    "print(os.environ['THP_MEM_ALLOC_ENABLE'], faults)\n"
)


def test_importing_the_toolkit_turns_on_huge_pages_for_torch_unless_told_not_to():
    import os
    import subprocess
    import sys

    def run(env: dict[str, str]) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _THP_SCRIPT], capture_output=True,
                             text=True, check=True,
                             env={k: v for k, v in os.environ.items()
                                  if k != "THP_MEM_ALLOC_ENABLE"} | env).stdout.split()
        return out[0], int(out[1])

    on, faults_on = run({})
    off, faults_off = run({"THP_MEM_ALLOC_ENABLE": "0"})
    assert (on, off) == ("1", "0")  # a caller's own setting is kept
    # a fresh 32 MB tensor: 8192 faults of 4 kB pages; with huge pages, where the kernel
    # allows them (mode "always" or "madvise"), about 16 times fewer (550 here)
    assert faults_off >= 4096
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp.read_text().split("[")[1].split("]")[0] if thp.is_file() else "never"
    if mode == "never":  # no huge pages to be had: no worse (a few faults of noise)
        assert faults_on <= 1.05 * faults_off
    else:
        assert 4 * faults_on < faults_off


_HEAP_SCRIPT = (
    "import os, numpy as np\n"
    "from geochem_sr.inference.heap import can_keep_heap, kept_heap\n"
    "def rss():\n"
    "    pages = int(open('/proc/self/statm').read().split()[1])\n"
    "    return pages * os.sysconf('SC_PAGE_SIZE') // 2**20\n"
    "base = rss()\n"
    "a = np.ones(50_000_000); del a; plain = rss() - base\n"
    "with kept_heap():\n"
    "    with kept_heap():  # a nested block leaving does not end the outer one\n"
    "        pass\n"
    "    a = np.ones(50_000_000); del a; kept = rss() - base\n"
    "after = rss() - base\n"
    "b = np.ones(50_000_000); del b; restored = rss() - base\n"
    "print(can_keep_heap(), plain, kept, after, restored)\n"
)


def test_prediction_keeps_freed_memory_for_the_next_tile_and_gives_it_back_after():
    """glibc returns a freed 400 MB array to the kernel at once; inside ``kept_heap`` (a
    prediction) it stays for the next tile's activations; after it, the heap is given back
    and glibc's defaults are restored. ``GEOCHEM_SR_KEEP_HEAP=0`` leaves it alone."""
    import os
    import subprocess
    import sys

    def run(env: dict[str, str]) -> list[str]:
        return subprocess.run([sys.executable, "-c", _HEAP_SCRIPT], capture_output=True,
                              text=True, check=True, env=os.environ | env).stdout.split()

    can, plain, kept, after, restored = run({})
    assert can == "True"  # this is glibc (Debian)
    assert int(plain) < 50 and int(after) < 50 and int(restored) < 50  # MB
    assert int(kept) > 300  # the freed 400 MB stayed in the heap, after a nested block too
    can, _, kept, _, _ = run({"GEOCHEM_SR_KEEP_HEAP": "0"})
    assert can == "False" and int(kept) < 50
