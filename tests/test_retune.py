"""Re-tuned interpolation: the sparse samples gridded with the settings that best
reproduce a denser map on the cells given to tune on (geochem_sr.gridding.retune)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import geochem_sr as gs
from geochem_sr.errors import DataError, SchemaError
from geochem_sr.gridding import CONCENTRATION


@pytest.fixture(scope="module")
def survey():
    region = gs.synthetic_region(seed=2, size_km=(3.2, 3.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = gs.build_survey(region.samples_sparse, region.samples_dense,
                             cell_size=region.cell_size, method="kriging", seed=0)
    samples = gs.read_samples(region.samples_sparse)
    fit = np.zeros((ds.sizes["y"], ds.sizes["x"]), bool)
    fit[:, : ds.sizes["x"] // 2] = True
    return ds, samples, fit


def _rmse(a, b, mask):
    d = (np.log10(a) - np.log10(b))[mask]
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d * d)))


def test_retuned_map_is_at_least_as_close_to_the_dense_map_where_it_was_tuned(survey):
    ds, samples, fit = survey
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = gs.retune_interpolation(samples, ds, ds["hr"], fit)
    record = json.loads(out.attrs["retuned"])
    assert set(record) == {str(e) for e in ds["element"].values}
    changed = 0
    for e, el in enumerate(record):
        got = _rmse(out[CONCENTRATION].values[e], ds["hr"].values[e], fit)
        assert got == pytest.approx(record[el]["rmse_fit"], rel=1e-5)
        assert got <= record[el]["rmse_fit_default"] * (1 + 1e-5)
        # the default kriging is the survey's own sparse map, cell for cell
        assert record[el]["rmse_fit_default"] == pytest.approx(
            _rmse(ds["lr"].values[e], ds["hr"].values[e], fit), rel=1e-5)
        if record[el]["setting"] != {"method": "kriging", "k": 16, "nugget_share": None}:
            changed += 1
            assert record[el]["rmse_fit"] <= 0.99 * record[el]["rmse_fit_default"]
    assert changed >= 1


def test_nothing_better_than_the_default_returns_the_sparse_map(survey):
    ds, samples, fit = survey
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = gs.retune_interpolation(samples, ds, ds["hr"], fit, min_gain=0.99)
    np.testing.assert_allclose(out[CONCENTRATION].values, ds["lr"].values, rtol=1e-6)


def test_retune_refuses_masks_off_the_grid_or_without_targets(survey):
    ds, samples, fit = survey
    with pytest.raises(SchemaError, match="fit_mask"):
        gs.retune_interpolation(samples, ds, ds["hr"], fit[:-1])
    with pytest.raises(DataError, match="no"):
        gs.retune_interpolation(samples, ds, ds["hr"], np.zeros_like(fit))
