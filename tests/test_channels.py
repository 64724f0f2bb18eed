"""Input/target contract: channel names, stacking, normalisation, augmentation."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError, ParameterError, SchemaError
from geochem_sr.features import (
    ASPECT_COS,
    ASPECT_SIN,
    augment,
    channel_names,
    fit_normalisation,
    inverse_augmentation,
    normalise,
    stack_inputs,
    target_residual,
)

ELEMENTS = ("As", "Cu", "Au")
FULL = "geochem+terrain+geology"


def survey(ny: int = 12, nx: int = 14, seed: int = 0, n_emb: int = 5) -> xr.Dataset:
    """A small hand-made survey dataset with every variable."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + nx * 50, 4000000 + ny * 50), 50.0,
                         "EPSG:32650")
    lr = rng.lognormal(size=(len(ELEMENTS), ny, nx)).astype("float32")
    hr = (lr * rng.lognormal(sigma=0.2, size=lr.shape)).astype("float32")
    lr[:, 0, :3] = np.nan  # outside the sparse coverage
    hr[1, -1, -2:] = np.nan
    aspect = rng.uniform(0, 360, (ny, nx)).astype("float32")
    aspect[2, 2] = np.nan  # a flat cell
    return g.assign(
        lr=((schema.ELEMENT, schema.Y, schema.X), lr),
        hr=((schema.ELEMENT, schema.Y, schema.X), hr),
        elevation=((schema.Y, schema.X), rng.normal(800, 30, (ny, nx)).astype("float32")),
        slope=((schema.Y, schema.X), rng.uniform(0, 30, (ny, nx)).astype("float32")),
        aspect=((schema.Y, schema.X), aspect),
        lithology=((schema.Y, schema.X), rng.integers(0, 3, (ny, nx)).astype("int16")),
        geology_embedding=((schema.EMBEDDING, schema.Y, schema.X),
                           rng.normal(size=(n_emb, ny, nx)).astype("float32")),
    ).assign_coords({schema.ELEMENT: list(ELEMENTS)})


# ----------------------------------------------------------------------------- names
def test_channel_names_of_the_three_input_sets():
    assert channel_names("geochem", ["As", "Mo"]) == ["lr:As", "lr:Mo"]
    assert channel_names("geochem+terrain", ["As"]) == [
        "lr:As", "elevation", "slope", "aspect_sin", "aspect_cos"]
    full = channel_names(FULL, schema.DEFAULT_ELEMENTS)
    assert len(full) == 19  # the paper's 18, with aspect as two channels
    assert full[:10] == [f"lr:{e}" for e in schema.DEFAULT_ELEMENTS]
    assert full[10:14] == ["elevation", "slope", "aspect_sin", "aspect_cos"]
    assert full[14:] == [f"embedding:{i}" for i in range(5)]
    assert channel_names(FULL, ["As"], n_embedding=3)[-1] == "embedding:2"


@pytest.mark.parametrize("bad", ["terrain", "geochem+soil", ""])
def test_channel_names_rejects_unknown_sets(bad):
    with pytest.raises(SchemaError, match="inputs"):
        channel_names(bad, ["As"])


# ----------------------------------------------------------------------------- stacking
def test_stack_inputs_log10_dims_dtype_and_crs():
    ds = survey()
    chans = channel_names(FULL, ELEMENTS)
    out = stack_inputs(ds, chans)
    assert out.dims == ("channel", "y", "x")
    assert out.dtype == np.float32
    assert list(out["channel"].values) == chans
    assert out.rio.crs == ds.rio.crs
    np.testing.assert_array_equal(out.sel(channel="lr:Cu").values,
                                  np.log10(ds.lr.sel(element="Cu").values))
    np.testing.assert_array_equal(out.sel(channel="slope").values, ds.slope.values)
    np.testing.assert_array_equal(out.sel(channel="embedding:3").values,
                                  ds.geology_embedding.values[3])
    # NaN where lr is missing, so callers can mask
    assert np.isnan(out.sel(channel="lr:As").values[0, :3]).all()
    assert np.isfinite(out.sel(channel="lr:As").values[1:]).all()


def test_non_positive_concentrations_become_nan():
    ds = survey()
    ds["lr"][0, 5, 5] = 0.0
    out = stack_inputs(ds, ["lr:As"])
    assert np.isnan(out.values[0, 5, 5])


def test_stack_inputs_dask_is_lazy_and_equal_to_numpy():
    ds = survey(ny=20, nx=24)
    chans = channel_names(FULL, ELEMENTS)
    stats = fit_normalisation(stack_inputs(ds, chans))
    dsd = ds.chunk({"y": 7, "x": 9})

    def refuse(*args, **kwargs):
        raise AssertionError("stack_inputs computed something")

    with dask.config.set(scheduler=refuse):
        lazy = stack_inputs(dsd, chans, stats)
        lazy_raw = stack_inputs(dsd, chans)
    assert isinstance(lazy.data, da.Array) and isinstance(lazy_raw.data, da.Array)
    np.testing.assert_array_equal(lazy.values, stack_inputs(ds, chans, stats).values)
    np.testing.assert_array_equal(lazy_raw.values, stack_inputs(ds, chans).values)


@pytest.mark.parametrize(
    ("drop", "channel", "needle"),
    [("slope", "slope", "slope"), ("aspect", "aspect_sin", "aspect"),
     ("geology_embedding", "embedding:0", "geology_embedding"), ("lr", "lr:As", "'lr'")],
)
def test_missing_variable_is_named(drop, channel, needle):
    ds = survey().drop_vars(drop)
    with pytest.raises(SchemaError, match=needle):
        stack_inputs(ds, [channel])


def test_missing_element_and_embedding_dimension_are_named():
    ds = survey(n_emb=3)
    with pytest.raises(SchemaError, match="Mo"):
        stack_inputs(ds, ["lr:Mo"])
    with pytest.raises(SchemaError, match="embedding:3"):
        stack_inputs(ds, channel_names(FULL, ELEMENTS, n_embedding=5))
    with pytest.raises(SchemaError, match="stats"):
        stack_inputs(ds, ["lr:As", "slope"], stats={"lr:As": (0.0, 1.0)})


def test_target_residual():
    ds = survey()
    res = target_residual(ds, ["Cu", "As"])
    assert res.dims == ("element", "y", "x") and res.dtype == np.float32
    assert list(res["element"].values) == ["Cu", "As"]
    expected = (np.log10(ds.hr.sel(element="Cu").values)
                - np.log10(ds.lr.sel(element="Cu").values))
    np.testing.assert_array_equal(res.sel(element="Cu").values, expected)
    assert np.isnan(res.sel(element="As").values[0, :3]).all()   # lr NaN
    assert np.isnan(res.sel(element="Cu").values[-1, -2:]).all()  # hr NaN
    assert np.isfinite(res.sel(element="As").values[1:]).all()
    with pytest.raises(SchemaError, match="Mo"):
        target_residual(ds, ["Mo"])


# ----------------------------------------------------------------------------- normalisation
def test_fit_normalisation_uses_only_masked_cells_and_ignores_nan():
    ds = survey(ny=20, nx=20)
    chans = channel_names(FULL, ELEMENTS)
    raw = stack_inputs(ds, chans)
    mask = np.zeros((20, 20), bool)
    mask[:10] = True
    stats = fit_normalisation(raw, mask)
    for name in ("lr:As", "elevation", "embedding:1"):
        v = raw.sel(channel=name).values[:10]
        assert stats[name][0] == pytest.approx(np.nanmean(v.astype(float)), rel=1e-9)
        assert stats[name][1] == pytest.approx(np.nanstd(v.astype(float)), rel=1e-9)
    assert stats[ASPECT_SIN] == (0.0, 1.0) and stats[ASPECT_COS] == (0.0, 1.0)
    # the other half does not count
    other = fit_normalisation(raw, ~mask)
    assert other["elevation"] != stats["elevation"]
    # DataArray mask and dask input give the same numbers
    dstats = fit_normalisation(raw.chunk({"y": 6}), xr.DataArray(mask, dims=("y", "x")))
    for name in chans:
        np.testing.assert_allclose(dstats[name], stats[name], rtol=1e-9)
    norm = stack_inputs(ds, chans, stats)
    np.testing.assert_allclose(
        norm.sel(channel="elevation").values[:10].std(), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(norm.values, normalise(raw, stats).values)
    mean, std = stats["lr:Au"]
    np.testing.assert_array_equal(
        norm.sel(channel="lr:Au").values,
        (raw.sel(channel="lr:Au").values - np.float32(mean)) / np.float32(std))


def test_fit_normalisation_floor_and_errors():
    ds = survey()
    ds["slope"][:] = 7.0
    raw = stack_inputs(ds, ["lr:As", "slope"])
    with pytest.warns(UserWarning, match="constant"):
        stats = fit_normalisation(raw)
    assert stats["slope"] == (7.0, 1.0)
    with pytest.raises(ParameterError, match="mask"):
        fit_normalisation(raw, np.ones((3, 3), bool))
    nothing = np.zeros(raw.shape[1:], bool)
    with pytest.raises(DataError, match="lr:As"):
        fit_normalisation(raw, nothing)


# ----------------------------------------------------------------------------- aspect
def test_aspect_encoding_is_continuous_across_north_and_flats_are_zero():
    ds = survey(ny=3, nx=4)
    ds["aspect"][:] = np.array([[359.0, 1.0, 90.0, 180.0],
                                [270.0, np.nan, 0.0, 45.0],
                                [np.nan, 10.0, 20.0, 30.0]], np.float32)
    ds["elevation"][2, 0] = np.nan  # no DEM there: aspect missing, not flat
    enc = stack_inputs(ds, [ASPECT_SIN, ASPECT_COS]).values
    vec = enc[:, 0, :]
    assert np.hypot(*(vec[:, 0] - vec[:, 1])) < 0.04  # 359 vs 1 degree: 2 degrees apart
    np.testing.assert_allclose(enc[:, 0, 2], [1.0, 0.0], atol=1e-6)   # east
    np.testing.assert_allclose(enc[:, 0, 3], [0.0, -1.0], atol=1e-6)  # south
    np.testing.assert_allclose(enc[:, 1, 0], [-1.0, 0.0], atol=1e-6)  # west
    np.testing.assert_array_equal(enc[:, 1, 1], [0.0, 0.0])          # flat
    assert np.isnan(enc[:, 2, 0]).all()                              # outside the DEM
    np.testing.assert_allclose(np.hypot(enc[0], enc[1])[np.isfinite(enc[0])
                                                       & (enc[0] ** 2 + enc[1] ** 2 > 0)],
                               1.0, atol=1e-6)


# ----------------------------------------------------------------------------- augmentation
def test_eight_distinct_invertible_augmentations_numpy_and_torch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 6)).astype("float32")
    y = rng.normal(size=(2, 6, 6)).astype("float32")
    chans = ["lr:As", "slope", "elevation"]
    outs = [augment(x, y, k, chans) for k in range(8)]
    flat = {o[0].tobytes() for o in outs}
    assert len(flat) == 8
    for k, (xk, yk) in enumerate(outs):
        back_x, back_y = augment(xk, yk, inverse_augmentation(k), chans)
        np.testing.assert_array_equal(back_x, x)
        np.testing.assert_array_equal(back_y, y)
        tx, ty = augment(torch.from_numpy(x), torch.from_numpy(y), k, chans)
        assert isinstance(tx, torch.Tensor)
        np.testing.assert_array_equal(tx.numpy(), xk)
        np.testing.assert_array_equal(ty.numpy(), yk)
    assert augment(x, None, 3)[1] is None
    # a batch (N, C, H, W) transforms like its members
    xb = np.stack([x, 2 * x])
    np.testing.assert_array_equal(augment(xb, None, 5, chans)[0][1], augment(2 * x, None, 5,
                                                                             chans)[0])
    with pytest.raises(ValueError, match="k"):
        augment(x, y, 8, chans)


def _aspect_deg(z: np.ndarray, cell: float) -> np.ndarray:
    """Aspect of a DEM (row 0 north, column 0 west), degrees clockwise from north."""
    dz_drow, dz_dcol = np.gradient(z.astype(np.float64), cell)
    dz_deast, dz_dnorth = dz_dcol, -dz_drow  # rows run south
    return np.degrees(np.arctan2(-dz_deast, -dz_dnorth)) % 360.0  # downslope direction


def _encode(aspect_deg: np.ndarray) -> np.ndarray:
    r = np.radians(aspect_deg)
    return np.stack([np.sin(r), np.cos(r)])


@pytest.mark.parametrize("surface", ["plane", "curved"])
def test_augmenting_aspect_equals_aspect_of_the_rotated_dem(surface):
    cell = 25.0
    rows, cols = np.mgrid[0:9, 0:9]
    east, north = cols * cell, -rows * cell
    if surface == "plane":
        z = 0.3 * east + 0.7 * north + 100.0  # rises to the north-east: faces south-west
        aspect = _aspect_deg(z, cell)
        np.testing.assert_allclose(aspect, np.degrees(np.arctan2(-0.3, -0.7)) % 360)
    else:
        z = np.sin(east / 60.0) * np.cos(north / 45.0) + 0.002 * east - 0.001 * north
        aspect = _aspect_deg(z, cell)
    chans = ["lr:As", ASPECT_SIN, ASPECT_COS, "slope"]
    x = np.concatenate([z[None], _encode(aspect), z[None] * 0 + 1.0]).astype(np.float64)
    for k in range(8):
        zk = augment(z[None], None, k)[0][0]          # the DEM of the rotated/mirrored map
        expected = _encode(_aspect_deg(zk, cell))
        got = augment(x, None, k, chans)[0]
        np.testing.assert_allclose(got[1:3], expected, atol=1e-9, err_msg=f"k={k}")
        np.testing.assert_array_equal(got[0], zk)     # scalar channels: only moved
        got_t = augment(torch.from_numpy(x), None, k, chans)[0].numpy()
        np.testing.assert_allclose(got_t, got, atol=1e-12)


def test_augment_needs_both_aspect_channels():
    x = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ParameterError, match="aspect"):
        augment(x, None, 1, ["lr:As", ASPECT_SIN])
    with pytest.raises(ParameterError, match="channels"):
        augment(x, None, 1, ["lr:As"])


def test_resolve_inputs_canonicalises_and_auto_takes_what_the_grid_has():
    from geochem_sr.features import resolve_inputs

    ds = schema.make_grid((0, 0, 200, 200), 50.0, "EPSG:32650")
    assert resolve_inputs("terrain+geochem", ds) == "geochem+terrain"
    assert resolve_inputs(["geology", "geochem"], ds) == "geochem+geology"
    assert resolve_inputs("auto", ds) == "geochem"
    for var in schema.TERRAIN_VARS:
        ds[var] = (("y", "x"), np.zeros((4, 4), "float32"))
    assert resolve_inputs("auto", ds) == "geochem+terrain"
    with pytest.raises(SchemaError, match="geochem"):
        resolve_inputs("terrain", ds)


def test_features_sit_above_schema_and_need_no_torch():
    """schema no longer imports the channels (the old schema <-> channels cycle), and the
    features import neither torch nor anything above them."""
    import subprocess
    import sys

    code = ("import sys, geochem_sr.schema; assert 'geochem_sr.features' not in sys.modules\n"
            "import geochem_sr.features\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith(("
            "'geochem_sr.sampling', 'geochem_sr.training', 'geochem_sr.inference'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
