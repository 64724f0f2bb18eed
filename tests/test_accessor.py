"""The ``.geosr`` accessor: a stateless face that gives what the functions give."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
import xarray as xr

import geochem_sr as gs

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ds():
    region = gs.synthetic_region(seed=0, size_km=(6.4, 6.4))
    return gs.build_survey(region.samples_sparse, region.samples_dense, dem=region.dem,
                           geology=region.geology, faults=region.faults, method="idw")


@pytest.fixture(scope="module")
def model(ds, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = ds.geosr.train(network="srcnn", epochs=1, seed=0, progress=False)
    path = tmp_path_factory.mktemp("m") / "m.pt"
    m.save(path)
    return m, path


def test_accessor_holds_no_state(ds):
    acc = ds.geosr
    assert vars(acc).keys() == {"_ds"} and acc._ds is ds
    other = ds.copy()
    assert other.geosr is not acc and other.geosr._ds is other


def test_validate_and_covariates_equal_the_functions(ds):
    assert ds.geosr.validate() is ds
    raised = ds.assign(elevation=ds.elevation + 100)
    terrain = raised.geosr.add_terrain()
    xr.testing.assert_identical(terrain, gs.add_terrain(raised))  # lr_view included
    assert not np.allclose(terrain.lr_view.sel(covariate="elevation"),
                           ds.lr_view.sel(covariate="elevation"))  # refreshed, not stale
    vocab = gs.vocabulary_of(ds)
    other = gs.GeologyVocabulary(vocab.units, vocab.vectors[::-1])
    geology = ds.geosr.embed_geology(vocabulary=other)
    xr.testing.assert_identical(geology, gs.embed_geology(ds, vocabulary=other))
    assert not np.allclose(geology.lr_view, ds.lr_view, equal_nan=True)
    assert ds.geosr.embedding_table().equals(gs.embedding_table(ds))


def test_train_equals_the_function(ds, model):
    m, _ = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        again = gs.train(ds, network="srcnn", epochs=1, seed=0, progress=False)
    assert again.digest == m.digest  # same seed, same content identity


def test_super_resolve_accepts_a_model_or_its_file(ds, model):
    m, path = model
    a = ds.geosr.super_resolve(m, tile=64, uncertainty=False).compute()
    b = ds.geosr.super_resolve(str(path), tile=64, uncertainty=False).compute()
    c = gs.super_resolve(ds, m, tile=64, uncertainty=False).compute()
    for name in ("hr_pred", "residual_pred"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
        np.testing.assert_array_equal(a[name].values, c[name].values)
    table = ds.geosr.evaluate(a)
    assert table.equals(gs.evaluate(ds, a))


def test_plots_return_matplotlib_objects(ds):
    import matplotlib.pyplot as plt

    ax = ds.geosr.plot("lr", "Cu")
    assert ax.get_title()
    plt.close("all")


def test_bad_model_path_is_a_clear_error(ds, tmp_path):
    with pytest.raises(gs.ModelFileError, match="not found"):
        ds.geosr.super_resolve(tmp_path / "missing.pt")
