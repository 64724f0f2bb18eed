"""Spatial blocks, patch windows, the patch dataset and prepare_training_data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from dask.callbacks import Callback
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.errors import DataError, GridError
from geochem_sr.features import augment, channel_names, fit_normalisation, stack_inputs
from geochem_sr.sampling import (
    ROLE_NONE,
    ROLE_TEST,
    ROLE_TRAIN,
    ROLE_VAL,
    BlockSplitter,
    PatchDataset,
    make_loader,
    patch_index,
    prepare_training_data,
    set_epoch,
    windows_mask,
)

ELEMENTS = ("As", "Cu")


def survey(ny: int = 64, nx: int = 64, seed: int = 0, hole: tuple | None = None) -> xr.Dataset:
    """A hand-made survey dataset; ``hole`` = (r0, r1, c0, c1) where hr is missing."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + nx * 50, 4000000 + ny * 50), 50.0,
                         "EPSG:32650")
    lr = rng.lognormal(size=(len(ELEMENTS), ny, nx)).astype("float32")
    hr = (lr * rng.lognormal(sigma=0.2, size=lr.shape)).astype("float32")
    if hole is not None:
        r0, r1, c0, c1 = hole
        hr[:, r0:r1, c0:c1] = np.nan
    aspect = rng.uniform(0, 360, (ny, nx)).astype("float32")
    return g.assign(
        lr=((schema.ELEMENT, schema.Y, schema.X), lr),
        hr=((schema.ELEMENT, schema.Y, schema.X), hr),
        elevation=((schema.Y, schema.X), rng.normal(800, 30, (ny, nx)).astype("float32")),
        slope=((schema.Y, schema.X), rng.uniform(0, 30, (ny, nx)).astype("float32")),
        aspect=((schema.Y, schema.X), aspect),
    ).assign_coords({schema.ELEMENT: list(ELEMENTS)})


def coverable(mask: np.ndarray, size: int) -> np.ndarray:
    """Brute force: cells inside at least one size x size window lying within the mask."""
    out = np.zeros_like(mask)
    for a in range(mask.shape[0] - size + 1):
        for b in range(mask.shape[1] - size + 1):
            if mask[a:a + size, b:b + size].all():
                out[a:a + size, b:b + size] = True
    return out


# ----------------------------------------------------------------------------- blocks
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ny=st.integers(12, 70), nx=st.integers(12, 70), block=st.integers(3, 30),
    gap=st.integers(0, 3), size=st.integers(2, 10), stride_frac=st.floats(0.2, 1.0),
    seed=st.integers(0, 1000), hole=st.booleans(),
)
def test_no_validation_or_test_cell_in_a_training_patch(ny, nx, block, gap, size, stride_frac,
                                                        seed, hole):
    ds = survey(ny, nx, seed=seed % 7, hole=(0, ny // 3, 0, nx // 2) if hole else None)
    splitter = BlockSplitter(block, gap=gap, seed=seed)
    try:
        roles = splitter.split(ds).values
    except DataError:  # fewer surveyed blocks than roles: refused, not mis-split
        assume(False)
    stride = max(1, int(size * stride_frac))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wins = {r: patch_index(roles == r, size, stride) for r in (ROLE_TRAIN, ROLE_VAL,
                                                                     ROLE_TEST)}
    painted = {r: windows_mask(w, roles.shape) for r, w in wins.items()}
    # the law: a training patch never holds a validation or test cell (and so on)
    assert not (painted[ROLE_TRAIN] & np.isin(roles, [ROLE_VAL, ROLE_TEST])).any()
    assert not (painted[ROLE_VAL] & np.isin(roles, [ROLE_TRAIN, ROLE_TEST])).any()
    assert not (painted[ROLE_TEST] & np.isin(roles, [ROLE_TRAIN, ROLE_VAL])).any()
    for r, ws in wins.items():
        for rows, cols in ws:
            assert (rows.stop - rows.start, cols.stop - cols.start) == (size, size)
            assert (roles[rows, cols] == r).all()
        # every cell of the role that some inside window can reach is covered
        assert not (coverable(roles == r, size) & ~painted[r]).any()
    # the gap: cells of different roles are more than `gap` cells apart
    for a in (ROLE_TRAIN, ROLE_VAL, ROLE_TEST):
        near = ndimage.binary_dilation(roles == a, np.ones((2 * gap + 1,) * 2, bool)) if gap \
            else roles == a
        others = (roles != a) & (roles != ROLE_NONE)
        assert not (near & others).any()


def test_split_balance_reproducibility_and_attrs():
    ds = survey(200, 200)
    splitter = BlockSplitter(20, seed=3)
    roles = splitter.split(ds)
    assert roles.dims == ("y", "x") and roles.dtype == np.int8
    assert roles.rio.crs == ds.rio.crs
    assert roles.attrs["flag_meanings"] == "none train val test"
    share = np.bincount(roles.values.ravel(), minlength=4)[1:] / roles.size
    np.testing.assert_allclose(share, [0.7, 0.15, 0.15], atol=0.03)
    np.testing.assert_array_equal(splitter.split(ds).values, roles.values)
    assert not np.array_equal(BlockSplitter(20, seed=4).split(ds).values, roles.values)
    # whole blocks: the role is constant inside each block
    ids = splitter.block_ids(ds)
    for b in np.unique(ids):
        assert np.unique(roles.values[ids == b]).size == 1


def test_blocks_without_data_get_no_role_and_small_areas_keep_every_role():
    ds = survey(60, 60, hole=(0, 60, 0, 30))
    ds["hr"][:, :, :30] = np.nan
    roles = BlockSplitter(10, seed=0).split(ds).values
    assert (roles[:, :30] == ROLE_NONE).all()
    assert set(np.unique(roles[:, 30:])) == {ROLE_TRAIN, ROLE_VAL, ROLE_TEST}
    tiny = survey(12, 12)
    roles = BlockSplitter(6, seed=0).split(tiny).values  # 4 blocks, 3 roles
    assert set(np.unique(roles)) == {ROLE_TRAIN, ROLE_VAL, ROLE_TEST}
    with pytest.raises(DataError, match="block_size"):
        BlockSplitter(12, seed=0).split(tiny)


def test_block_size_in_metres_or_cells_and_bad_arguments():
    ds = survey(40, 40)  # 50 m cells
    assert BlockSplitter(1000.0).block_cells(ds) == (20, 20)
    assert BlockSplitter(7).block_cells(ds) == (7, 7)
    ids = BlockSplitter(1000.0).block_ids(ds)
    assert np.unique(ids).size == 4 and (ids[:20, :20] == ids[0, 0]).all()
    with pytest.raises(GridError, match="block_size"):
        BlockSplitter(0)
    with pytest.raises(GridError, match="fractions"):
        BlockSplitter(10, fractions=(0.0, 0.5, 0.5))
    with pytest.raises(GridError, match="gap"):
        BlockSplitter(10, gap=-1)


def test_folds_partition_the_blocks_and_keep_the_gap():
    ds = survey(80, 80, hole=(0, 20, 0, 20))
    ds["lr"][:, :20, :20] = np.nan
    splitter = BlockSplitter(10, gap=2, seed=5)
    folds = list(splitter.folds(ds, 4))
    assert len(folds) == 4
    vals = np.stack([v.values for _, v in folds])
    assert (vals.sum(0) <= 1).all()                      # validation sets are disjoint
    surveyed = splitter.block_ids(ds) >= 0
    surveyed[:20, :20] = False                           # blocks without data are no fold
    np.testing.assert_array_equal(vals.any(0), surveyed)
    sizes = vals.sum((1, 2))
    assert sizes.max() - sizes.min() <= 100              # balanced to one block
    for train, val in folds:
        assert not (train.values & val.values).any()
        near = ndimage.binary_dilation(val.values, np.ones((5, 5), bool))
        assert not (near & train.values).any()
        assert train.values.sum() > 0
    again = list(splitter.folds(ds, 4))
    for (t1, v1), (t2, v2) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(v1.values, v2.values)
        np.testing.assert_array_equal(t1.values, t2.values)


# ----------------------------------------------------------------------------- windows
def test_edge_windows_are_shifted_inward_not_dropped():
    mask = np.zeros((50, 60), bool)
    mask[5:45, 10:50] = True  # 40 x 40
    wins = patch_index(mask, size=32, stride=16)
    starts = [(r.start, c.start) for r, c in wins]
    assert starts == [(5, 10), (5, 18), (13, 10), (13, 18)]
    np.testing.assert_array_equal(windows_mask(wins, mask.shape), mask)


def test_windows_are_slices_and_views():
    mask = np.ones((70, 45), bool)
    wins = patch_index(mask, size=32, stride=16)
    arr = np.arange(3 * 70 * 45, dtype=np.float32).reshape(3, 70, 45)
    for rows, cols in wins:
        assert isinstance(rows, slice) and isinstance(cols, slice)
        view = arr[:, rows, cols]
        assert view.shape == (3, 32, 32) and np.shares_memory(view, arr)
    assert windows_mask(wins, mask.shape).all()


def test_l_shaped_region_is_covered():
    mask = np.zeros((80, 80), bool)
    mask[:40, :] = True
    mask[:, :40] = True
    wins = patch_index(mask, size=16, stride=16)
    painted = windows_mask(wins, mask.shape)
    np.testing.assert_array_equal(painted, mask)
    assert all(mask[r, c].all() for r, c in wins)


def test_regions_smaller_than_a_patch_are_skipped_with_a_warning():
    mask = np.zeros((70, 60), bool)
    mask[:20, :] = True      # 20 rows: narrower than 32
    mask[30:, 20:] = True    # 40 x 40: fits
    with pytest.warns(UserWarning, match="narrower"):
        wins = patch_index(mask, size=32, stride=16)
    assert wins and all(r.start >= 30 for r, _ in wins)


def test_mostly_unknown_windows_are_skipped():
    mask = np.ones((32, 64), bool)
    valid = np.ones((32, 64), bool)
    valid[:, 32:] = False  # right half: target unknown
    wins = patch_index(mask, size=32, stride=16, min_valid=0.5, valid=valid)
    starts = [c.start for _, c in wins]
    assert starts == [0, 16]  # 100 % and 50 % valid; 0 % skipped
    assert patch_index(mask, 32, 16, min_valid=0.6, valid=valid)[-1][1].start == 0


# ----------------------------------------------------------------------------- dataset
def _stacked(ds):
    chans = channel_names("geochem+terrain", ELEMENTS)
    raw = stack_inputs(ds, chans)
    stats = fit_normalisation(raw)
    from geochem_sr.features import target_residual
    return stack_inputs(ds, chans, stats), target_residual(ds)


def test_patch_dataset_items_and_augmentation():
    ds = survey(64, 64)
    ds["lr"][0, 3, 3] = np.nan
    x_all, y_all = _stacked(ds)
    wins = patch_index(np.ones((64, 64), bool), 32, 16)
    plain = PatchDataset(x_all, y_all, wins)
    x, y, m = plain[0]
    assert x.dtype == torch.float32 and y.dtype == torch.float32 and m.dtype == torch.bool
    assert x.shape == (6, 32, 32) and y.shape == (2, 32, 32)
    assert x[0, 3, 3] == 0.0 and not m[0, 3, 3] and torch.isnan(y[0, 3, 3])
    np.testing.assert_array_equal(m.numpy(), np.isfinite(y.numpy()))
    np.testing.assert_array_equal(y.numpy(), y_all.values[:, :32, :32])
    aug = PatchDataset(x_all, y_all, wins, augment=True, seed=11)
    ks = [aug.augmentation(i) for i in range(len(aug))]
    assert len(set(ks)) > 1
    for i in range(len(aug)):
        xa, ya, _ = aug[i]
        rows, cols = wins[i]
        ex, ey = augment(np.nan_to_num(x_all.values[:, rows, cols]), y_all.values[:, rows, cols],
                         ks[i], plain.channels)
        np.testing.assert_array_equal(xa.numpy(), ex)
        np.testing.assert_array_equal(ya.numpy(), ey)


def test_patch_dataset_is_reproducible_and_changes_with_epoch():
    ds = survey(64, 64)
    x_all, y_all = _stacked(ds)
    wins = patch_index(np.ones((64, 64), bool), 32, 8)
    a = PatchDataset(x_all, y_all, wins, augment=True, seed=5)
    b = PatchDataset(x_all, y_all, wins, augment=True, seed=5)
    for i in range(len(a)):
        for ta, tb in zip(a[i], b[i], strict=True):
            assert torch.equal(ta, tb)
    before = [a.augmentation(i) for i in range(len(a))]
    a.set_epoch(1)
    assert [a.augmentation(i) for i in range(len(a))] != before
    c = PatchDataset(x_all, y_all, wins, augment=True, seed=6)
    assert [c.augmentation(i) for i in range(len(c))] != before


class _Computes(Callback):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def test_dask_inputs_are_loaded_once_and_equal_numpy():
    ds = survey(64, 64)
    x_np, y_np = _stacked(ds)
    x_dk, y_dk = _stacked(ds.chunk({"y": 16, "x": 16}))
    wins = patch_index(np.ones((64, 64), bool), 32, 16)
    lazy = PatchDataset(x_dk, y_dk, wins)
    eager = PatchDataset(x_np, y_np, wins)
    with _Computes() as counter:
        items = [lazy[i] for i in range(len(lazy))]
    assert counter.n == 1
    for i, item in enumerate(items):
        for t1, t2 in zip(item, eager[i], strict=True):
            assert torch.equal(t1, t2)
    small = PatchDataset(x_dk, y_dk, wins, max_bytes=10)  # too big: read per window
    for t1, t2 in zip(small[3], eager[3], strict=True):
        assert torch.equal(t1, t2)


def test_loader_is_seeded_per_epoch():
    ds = survey(64, 64)
    x_all, y_all = _stacked(ds)
    wins = patch_index(np.ones((64, 64), bool), 32, 8)

    def batches(seed, epoch):
        loader = make_loader(PatchDataset(x_all, y_all, wins, augment=True, seed=seed),
                             batch_size=4, seed=seed)
        set_epoch(loader, epoch)
        return [b[0] for b in loader]

    first, again = batches(1, 0), batches(1, 0)
    assert len(first) == 7 and first[0].shape == (4, 6, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, batches(1, 1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, batches(2, 0), strict=True))


# ----------------------------------------------------------------------------- one call
def test_prepare_training_data():
    ds = survey(128, 128, hole=(100, 128, 0, 40))
    splitter = BlockSplitter(32, gap=1, seed=2)
    td = prepare_training_data(ds, "geochem+terrain", splitter=splitter, patch_size=16,
                               stride=8, seed=4)
    assert td.channels == channel_names("geochem+terrain", ELEMENTS)
    assert td.elements == list(ELEMENTS)
    roles = td.roles.values
    np.testing.assert_array_equal(roles, splitter.split(ds).values)
    for code, wins, dset in ((ROLE_TRAIN, td.train_windows, td.train),
                             (ROLE_VAL, td.val_windows, td.val),
                             (ROLE_TEST, td.test_windows, td.test)):
        assert wins and dset.windows == wins
        assert all((roles[r, c] == code).all() for r, c in wins)
    assert td.train.augment and not td.val.augment and not td.test.augment
    # statistics from the training blocks only
    raw = stack_inputs(ds, td.channels)
    expected = fit_normalisation(raw, roles == ROLE_TRAIN)
    for name in td.channels:
        np.testing.assert_allclose(td.stats[name], expected[name], rtol=1e-6)
    # inputs are exactly what inference builds with the same statistics
    r0, c0 = td.offset
    full = stack_inputs(ds, td.channels, td.stats).values
    ny, nx = td.inputs.shape[1:]
    np.testing.assert_array_equal(td.inputs.values, full[:, r0:r0 + ny, c0:c0 + nx])
    x, y, m = td.val[0]
    rows, cols = td.val_windows[0]
    np.testing.assert_array_equal(x.numpy(), np.nan_to_num(full[:, rows, cols]))
    # windows skip the mostly-unknown corner
    for r, c in td.train_windows + td.val_windows + td.test_windows:
        assert np.isfinite(ds.hr.values[0, r, c]).mean() >= 0.5


def test_prepare_training_data_refuses_blocks_smaller_than_patches():
    ds = survey(64, 64)
    with pytest.raises(DataError, match="patches"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_training_data(ds, "geochem", splitter=BlockSplitter(8, seed=0), patch_size=32)


def test_role_codes_are_defined_once_and_agree():
    from geochem_sr.sampling import ROLE_CODES, ROLE_NAMES, blocks

    assert ROLE_CODES == {"train": ROLE_TRAIN, "val": ROLE_VAL, "test": ROLE_TEST}
    assert all(ROLE_NAMES[code] == name for name, code in ROLE_CODES.items())
    assert ROLE_NAMES[ROLE_NONE] == "" and blocks.ROLE_CODES is ROLE_CODES
    roles = BlockSplitter(16, seed=0).split(survey(64, 64))
    assert roles.attrs["flag_meanings"].split() == ["none", *ROLE_CODES]


def test_blocks_and_windows_import_without_torch():
    """Dask workers computing applicability read the role codes: no torch for them; the
    patch dataset and prepare_training_data load torch on first use."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from geochem_sr.sampling import ROLE_TRAIN, BlockSplitter, patch_index\n"
            "assert 'torch' not in sys.modules\n"
            "from geochem_sr.sampling import PatchDataset, prepare_training_data\n"
            "assert 'torch' in sys.modules\n"
            "import geochem_sr as gs\n"
            "from geochem_sr.sampling import blocks\n"
            "assert gs.BlockSplitter is blocks.BlockSplitter\n")
    subprocess.run([sys.executable, "-c", code], check=True)
