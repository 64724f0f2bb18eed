"""Held-out blocks that leak nothing into training: the reach of the dense map's
interpolation, and a gap as wide as it between blocks of different roles."""

from __future__ import annotations

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
    r, dense = region
    ds = survey
    gap = leakage_gap(ds)
    assert gap >= 2
    # the cell of each dense sample: the nearest cell centre
    rows = ds.indexes[schema.Y].get_indexer(dense.geometry.y.values, method="nearest")
    cols = ds.indexes[schema.X].get_indexer(dense.geometry.x.values, method="nearest")
    assert (rows >= 0).all() and (cols >= 0).all()
    before = ds.hr.sel(element="Cu").values
    for g in (0, gap // 2, gap):
        role = BlockSplitter(block_size=32, gap=g, seed=0).split(ds).values
        inside = np.isin(role, (ROLE_VAL, ROLE_TEST))[rows, cols]
        assert inside.sum() > 10
        moved = dense.copy()
        moved.loc[inside, "Cu"] = moved.loc[inside, "Cu"] * 10
        after = _survey(r, moved).hr.sel(element="Cu").values
        train = role == ROLE_TRAIN
        changed = ~np.isclose(after[train], before[train], rtol=1e-6)
        if g == 0:
            assert changed.sum() > 100  # without a gap, held-out samples reach training
        elif g < gap:
            assert changed.any()  # a clearly narrower gap still leaks
        else:
            assert train.sum() > 0 and not changed.any(), int(changed.sum())
