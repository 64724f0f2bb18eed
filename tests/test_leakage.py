"""Held-out blocks that leak nothing into training: the reach of the dense map's
interpolation, and a gap as wide as it between blocks of different roles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import geochem_sr as gs
from geochem_sr import schema
from geochem_sr.sampling import ROLE_TEST, ROLE_TRAIN, ROLE_VAL, BlockSplitter, leakage_gap


@pytest.fixture(scope="module")
def region():
    r = gs.synthetic_region(seed=0, size_km=(6.4, 6.4))
    return r, gs.read_samples(r.samples_dense)


def _survey(r, dense):
    return gs.build_survey(r.samples_sparse, dense, cell_size=r.cell_size, bounds=r.bounds,
                           method="idw")


@pytest.fixture(scope="module")
def survey(region):
    r, dense = region
    return _survey(r, dense)


def test_reach_is_recorded_and_bounds_every_cells_neighbourhood(region, survey):
    r, _ = region
    reach = survey.attrs[schema.ATTR_HR_REACH]
    # 16 nearest samples of a 1:25,000 survey: several hundred metres, less than the region
    assert 300 < reach < 3000
    assert leakage_gap(survey) == int(np.ceil(reach / r.cell_size))
    assert leakage_gap(survey.drop_attrs()) is None  # a dataset that does not record it


def test_a_held_out_sample_does_not_move_any_training_target(region, survey):
    """Perturb the dense samples inside the held-out blocks: with the gap, no training
    cell's dense value moves; with no gap or half the gap, some do (the leak the gap
    closes), so the gap is pinned from both sides."""
    gap = leakage_gap(survey)
    assert gap >= 2
    for g in (0, gap // 2, gap):
        role = BlockSplitter(block_size=32, gap=g, seed=0).split(survey).values
        changed = _moved_training_cells(region, survey, role)
        if g == 0:
            assert changed > 100  # without a gap, held-out samples reach training
        elif g < gap:
            assert changed > 0  # a clearly narrower gap still leaks
        else:
            assert changed == 0


def _moved_training_cells(region, survey, role: np.ndarray) -> int:
    """Training cells whose dense value moves when the dense samples inside the held-out
    (validation and test) cells of ``role`` are multiplied by 10."""
    r, dense = region
    rows = survey.indexes[schema.Y].get_indexer(dense.geometry.y.values, method="nearest")
    cols = survey.indexes[schema.X].get_indexer(dense.geometry.x.values, method="nearest")
    inside = np.isin(role, (ROLE_VAL, ROLE_TEST))[rows, cols]
    assert inside.sum() > 10
    moved = dense.copy()
    moved.loc[inside, "Cu"] = moved.loc[inside, "Cu"] * 10
    after = _survey(r, moved).hr.sel(element="Cu").values
    train = role == ROLE_TRAIN
    assert train.sum() > 0
    return int((~np.isclose(after[train], survey.hr.sel(element="Cu").values[train],
                            rtol=1e-6)).sum())


def test_training_splits_by_default_with_the_leakage_gap(region, survey):
    """What train() does when given no splitter: the gap is the dense map's reach, the
    blocks leave a patch inside a training block ringed by held-out ones, and no training
    target moves when the held-out dense samples do."""
    from geochem_sr.sampling import default_block_size, describe_gap, prepare_training_data

    gap = leakage_gap(survey)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        data = prepare_training_data(survey, "geochem", patch_size=16, stride=8)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "too small for a gap" in m]  # it affords the full gap
    # ... but holds four blocks: the validation and the test cells are one area each
    assert data.blocks == {"train": 2, "val": 1, "test": 1}
    assert [m for m in said if "validation and test cells lie in one block" in m]
    assert data.split_summary()["blocks"] == data.blocks
    assert describe_gap({**data.roles.attrs, "blocks": data.blocks}).startswith(
        "validation and test cells in one block of the split each")
    assert describe_gap({**data.roles.attrs, "blocks": {**data.blocks, "test": 2}}).startswith(
        "validation cells in one block of the split (the scores of one area); held-out")
    attrs = data.roles.attrs
    assert attrs["gap_cells"] == attrs["leakage_gap_cells"] == gap
    assert attrs["hr_reach_m"] == survey.attrs[schema.ATTR_HR_REACH]
    assert list(attrs["block_size_cells"]) == [default_block_size(16, gap)] * 2
    assert data.train_windows and data.val_windows and data.test_windows
    assert "no training target uses a held-out dense sample" in describe_gap(attrs)
    assert _moved_training_cells(region, survey, data.roles.values) == 0


def test_a_region_too_small_for_the_gap_falls_back_and_says_optimistic(region):
    """3.2 km: the full gap leaves no three blocks with patches; the default split takes
    the widest narrower gap that works, warns, and every record says OPTIMISTIC."""
    from geochem_sr.sampling import describe_gap, is_optimistic, prepare_training_data

    r = gs.synthetic_region(seed=0, size_km=(3.2, 3.2))
    small = gs.build_survey(r.samples_sparse, r.samples_dense, cell_size=r.cell_size,
                            bounds=r.bounds, method="idw")
    need = leakage_gap(small)
    with pytest.warns(UserWarning, match=f"too small for a gap of {need} cells"):
        data = prepare_training_data(small, "geochem", patch_size=16, stride=8)
    attrs = data.roles.attrs
    assert 0 <= attrs["gap_cells"] < need == attrs["leakage_gap_cells"]
    assert is_optimistic(attrs) is True
    assert "OPTIMISTIC" in describe_gap(attrs)


def test_models_and_reports_say_how_far_held_out_blocks_lie(survey):
    """The model file records the gap beside the gap the data ask for; the summary and the
    trust report say it in words; an explicit gap of 0 is allowed and labelled."""
    from geochem_sr.training import train

    model = train(survey, "srcnn", "geochem", epochs=1, patch_size=16, stride=8, seed=0,
                  network_kwargs={"features": 4, "kernel_sizes": [3, 1, 3]})
    split = model.training.split
    assert split["gap_cells"] == split["leakage_gap_cells"] == leakage_gap(survey)
    assert "no training target uses a held-out dense sample" in model.summary()
    zero = train(survey, "srcnn", "geochem", epochs=1, patch_size=16, stride=8, seed=0,
                 network_kwargs={"features": 4, "kernel_sizes": [3, 1, 3]},
                 splitter=BlockSplitter(32, gap=0, seed=0))
    assert zero.training.split["gap_cells"] == 0
    assert "OPTIMISTIC" in zero.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cal = gs.calibrate(survey, model)
    from geochem_sr.trust import trust_report

    report = trust_report(None, cal)
    assert "no training target uses a held-out dense sample" in report.attrs["held_out"]
