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


def test_reach_is_recorded_and_bounds_every_cells_neighbourhood(region):
    r, dense = region
    ds = _survey(r, dense)
    reach = ds.attrs[schema.ATTR_HR_REACH]
    # 16 nearest samples of a 1:25,000 survey: several hundred metres, less than the region
    assert 300 < reach < 3000
    assert leakage_gap(ds) == int(np.ceil(reach / r.cell_size))
    assert leakage_gap(ds.drop_attrs()) is None  # a dataset that does not record it


def test_a_held_out_sample_does_not_move_any_training_target(region):
    """Perturb the dense samples inside the held-out blocks: with the gap, no training
    cell's dense value moves; with no gap, some do (the leak the gap closes)."""
    r, dense = region
    ds = _survey(r, dense)
    roles = {gap: BlockSplitter(block_size=32, gap=gap, seed=0).split(ds).values
             for gap in (0, leakage_gap(ds))}
    for gap, role in roles.items():
        held = np.isin(role, (ROLE_VAL, ROLE_TEST))
        rows = np.clip(np.searchsorted(-ds.y.values, -dense.geometry.y.values), 0,
                       ds.sizes["y"] - 1)
        cols = np.clip(np.searchsorted(ds.x.values, dense.geometry.x.values), 0,
                       ds.sizes["x"] - 1)
        inside = held[rows, cols]
        assert inside.sum() > 10
        moved = dense.copy()
        moved.loc[inside, "Cu"] = moved.loc[inside, "Cu"] * 10
        after = _survey(r, moved)
        train = role == ROLE_TRAIN
        changed = ~np.isclose(after.hr.sel(element="Cu").values[train],
                              ds.hr.sel(element="Cu").values[train], rtol=1e-6)
        if gap == 0:
            assert changed.sum() > 100  # without a gap, held-out samples reach training
        else:
            assert train.sum() > 0 and not changed.any(), int(changed.sum())
