"""Maps: km axes, log scales with units, geology legends, hatching, laziness, PNG output."""

from __future__ import annotations

import dask.array as dska
import matplotlib
import numpy as np
import pytest
import xarray as xr

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402

from geochem_sr import plotting, schema  # noqa: E402
from geochem_sr.covariates.geology import unit_names  # noqa: E402
from geochem_sr.errors import DataError, SchemaError  # noqa: E402

CELL = 50.0
ELEMENTS = ("As", "Cu", "Au")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_ds(ny: int = 16, nx: int = 20, seed: int = 0) -> xr.Dataset:
    """A tiny survey with concentrations, terrain, lithology, a prediction and an AOA flag."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + nx * CELL, 4000000 + ny * CELL), CELL,
                         "EPSG:32650")
    shape = (len(ELEMENTS), ny, nx)
    lr = rng.lognormal(size=shape).astype("float32")
    lr[:, :3, :4] = np.nan  # off coverage
    hr = (lr * rng.lognormal(sigma=0.2, size=shape)).astype("float32")
    pred = (lr * rng.lognormal(sigma=0.1, size=shape)).astype("float32")
    lith = np.zeros((ny, nx), "int16")
    lith[:, nx // 3:] = 1
    lith[:, 2 * nx // 3:] = 4
    lith[0, 0] = -1
    ds = g.assign(
        lr=((schema.ELEMENT, schema.Y, schema.X), lr),
        hr=((schema.ELEMENT, schema.Y, schema.X), hr),
        hr_pred=((schema.ELEMENT, schema.Y, schema.X), pred),
        hr_pred_std=((schema.ELEMENT, schema.Y, schema.X), np.full(shape, 0.1, "float32")),
        residual_pred=((schema.ELEMENT, schema.Y, schema.X), np.log10(pred / lr)),
        slope=((schema.Y, schema.X), rng.uniform(0, 40, (ny, nx)).astype("float32")),
        aspect=((schema.Y, schema.X), rng.uniform(0, 360, (ny, nx)).astype("float32")),
        lithology=((schema.Y, schema.X), lith,
                   {"flag_values": [0, 1, 4], "flag_meanings": "granite schist limestone"}),
        aoa=((schema.Y, schema.X), np.arange(nx)[None, :].repeat(ny, 0) < nx - 5),
    )
    units = [schema.DEFAULT_UNITS.get(e, "ppm") for e in ELEMENTS]
    return ds.assign_coords({schema.ELEMENT: list(ELEMENTS),
                             schema.ELEMENT_UNITS: (schema.ELEMENT, units)})


def _km_limits_ok(ax, ds: xr.Dataset, cells: int = 1) -> None:
    """Axis limits within ``cells`` cells of the grid's cell centres, in km."""
    x, y = ds[schema.X].values / 1e3, ds[schema.Y].values / 1e3
    c = cells * CELL / 1e3
    for (lo, hi), v in ((ax.get_xlim(), x), (sorted(ax.get_ylim()), y)):
        assert abs(lo - v.min()) <= c and abs(hi - v.max()) <= c and hi - lo > np.ptp(v) / 2


def test_concentration_map_log_scale_units_and_km_axes():
    ds = make_ds()
    ax = plotting.plot_map(ds, schema.LR, "Au")
    _km_limits_ok(ax, ds)
    assert ax.get_xlabel().startswith("Easting (km)") and "EPSG:32650" in ax.get_xlabel()
    assert ax.get_ylabel() == "Northing (km)"
    assert ax.get_aspect() == 1.0
    im = ax.images[0]
    assert isinstance(im.norm, LogNorm) and 0 < im.norm.vmin < im.norm.vmax
    cbar = im.colorbar
    assert "ppb" in cbar.ax.get_ylabel() and "Au" in cbar.ax.get_ylabel()
    # NaN cells: masked in the image, grey background, "no data" in the legend
    assert np.ma.getmaskarray(im.get_array())[:3, :4].all()
    assert ax.get_facecolor()[:3] == matplotlib.colors.to_rgb(plotting.NO_DATA_COLOR)
    assert "no data" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax2 = plotting.plot_map(ds, schema.LR, "Cu", log=False, vmin=0.5, vmax=3.0)
    assert not isinstance(ax2.images[0].norm, LogNorm)
    assert ax2.images[0].norm.vmin == 0.5 and "ppm" in ax2.images[0].colorbar.ax.get_ylabel()


def test_other_variables_get_their_scales():
    ds = make_ds()
    res = plotting.plot_map(ds, schema.RESIDUAL_PRED, "As").images[0].norm
    assert isinstance(res, TwoSlopeNorm) and res.vcenter == 0 and res.vmin == -res.vmax
    asp = plotting.plot_map(ds, schema.ASPECT).images[0]
    assert asp.get_cmap().name == "twilight" and (asp.norm.vmin, asp.norm.vmax) == (0, 360)
    slope = plotting.plot_map(ds, schema.SLOPE).images[0]
    assert not isinstance(slope.norm, LogNorm) and "°" in slope.colorbar.ax.get_ylabel()
    std = plotting.plot_map(ds, schema.HR_PRED_STD, "Cu").images[0]
    assert not isinstance(std.norm, (LogNorm, TwoSlopeNorm))
    assert isinstance(plotting.plot_map(ds, "hr_pred", "Au").images[0].norm, LogNorm)


def test_lithology_legend_lists_unit_names_and_no_data():
    ds = make_ds()
    ax = plotting.plot_map(ds, schema.LITHOLOGY)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["granite", "schist", "limestone", "no data"]
    img = ax.images[0].get_array()
    assert np.ma.getmaskarray(img)[0, 0]  # -1 = no unit
    assert len(np.unique(img.compressed())) == 3
    assert ax.images[0].colorbar is None


def test_unit_names_from_attrs():
    da = xr.DataArray(np.zeros((2, 2), "int16"), dims=("y", "x"),
                      attrs={"units_json": '["Quaternary alluvium", "granite"]'})
    assert unit_names(da) == {0: "Quaternary alluvium", 1: "granite"}
    da.attrs = {"units_json": {"granite": 3, "schist_2": 5}}
    assert unit_names(da) == {3: "granite", 5: "schist_2"}
    da.attrs = {"flag_values": np.array([2, 7]), "flag_meanings": "Triassic_granite schist"}
    assert unit_names(da) == {2: "Triassic granite", 7: "schist"}


def test_hatch_outside_area_of_applicability():
    ds = make_ds()
    ax = plotting.plot_map(ds, schema.LR, "As", hatch=schema.AOA)
    hatched = [c for c in ax.collections if any(getattr(c, "hatches", None) or [])]
    assert len(hatched) == 1
    assert "outside area" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax2 = plotting.plot_map(ds, schema.LR, "As", hatch=ds[schema.AOA] | True)
    assert not ax2.collections  # nothing outside -> nothing hatched
    with pytest.raises(SchemaError, match="hatch"):
        plotting.plot_map(ds, schema.LR, "As", hatch=ds[schema.LR])


def test_lazy_input_stays_lazy_and_only_the_element_is_computed():
    ds = make_ds().chunk({schema.ELEMENT: 1, schema.Y: 8, schema.X: 8})

    def poison(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 1:  # element "Cu"
            raise RuntimeError("computed an element that is not plotted")
        return block

    ds["lr"] = ds.lr.copy(data=dska.map_blocks(poison, ds.lr.data, dtype="float32"))
    ax = plotting.plot_map(ds, schema.LR, "Au", hatch=schema.AOA)
    assert isinstance(ds.lr.data, dska.Array) and isinstance(ds.aoa.data, dska.Array)
    eager = plotting.plot_map(make_ds(), schema.LR, "Au")
    np.testing.assert_array_equal(ax.images[0].get_array(), eager.images[0].get_array())
    with pytest.raises(RuntimeError, match="not plotted"):
        plotting.plot_map(ds, schema.LR, "Cu")
    fig = plotting.compare_maps(ds, ["Au"])
    assert isinstance(ds.lr.data, dska.Array) and isinstance(ds.hr.data, dska.Array)
    ref = plotting.compare_maps(make_ds(), ["Au"])
    for a, b in zip(fig.axes, ref.axes, strict=True):
        if a.images:
            np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())


def test_large_grids_are_coarsened():
    ds = make_ds(ny=16, nx=20)
    ax = plotting.plot_map(ds.chunk({schema.Y: 8}), schema.LR, "As", max_cells=8,
                           hatch=schema.AOA)
    img = ax.images[0].get_array()
    assert img.shape == (8, 6)  # ceil(16/8) = 2, ceil(20/8) = 3, trimmed
    expected = ds.lr.sel(element="As").coarsen(y=2, x=3, boundary="trim").mean()
    np.testing.assert_allclose(img.filled(np.nan), expected.values, rtol=1e-6)
    _km_limits_ok(ax, ds, cells=3)  # the 2 columns left over by the trim are dropped
    lith = plotting.plot_map(ds, schema.LITHOLOGY, max_cells=8).images[0].get_array()
    assert lith.shape == (8, 6) and set(np.unique(lith.compressed())) <= {0, 1, 2}


def test_bad_selection_names_the_choices():
    ds = make_ds()
    with pytest.raises(SchemaError, match="As"):
        plotting.plot_map(ds, schema.LR)
    with pytest.raises(SchemaError, match="'nope'"):
        plotting.plot_map(ds, "nope")


def test_compare_maps_shares_the_scale_per_row(tmp_path):
    ds = make_ds()
    fig = plotting.compare_maps(ds, ["Au", "Cu"])
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 10  # 2 rows x (3 variables + error + uncertainty: hr_pred_std is there)
    for row in (axes[:5], axes[5:]):
        norms = [a.images[0].norm for a in row[:3]]
        assert all(isinstance(n, LogNorm) for n in norms)
        assert len({(n.vmin, n.vmax) for n in norms}) == 1
        assert isinstance(row[3].images[0].norm, TwoSlopeNorm)
        assert "uncertainty" in row[4].get_title()
    joint = np.concatenate([ds[v].sel(element="Au").values.ravel()
                            for v in ("lr", "hr_pred", "hr")])
    lo, hi = np.nanpercentile(joint, [2, 98])
    norm = axes[0].images[0].norm
    np.testing.assert_allclose([norm.vmin, norm.vmax], [lo, hi], rtol=1e-5)
    err = axes[3].images[0].get_array()
    expected = np.log10(ds.hr_pred.sel(element="Au")) - np.log10(ds.hr.sel(element="Au"))
    np.testing.assert_allclose(err.filled(np.nan), expected.values, rtol=1e-5)
    labels = [a.get_ylabel() for a in fig.axes if not a.images]
    assert any("ppb" in t for t in labels) and any("ppm" in t for t in labels)
    fig.savefig(tmp_path / "compare.png", dpi=60)
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_compare_maps_merged_datasets_without_error_column():
    ds = make_ds()
    truth = ds[[schema.HR]].rename({schema.HR: "truth"})
    merged = xr.merge([ds[[schema.LR, schema.HR]], truth])
    fig = plotting.compare_maps(merged, ["As"], ("lr", "hr", "truth"), error=False,
                                titles=["sparse", "dense", "truth"])
    axes = [a for a in fig.axes if a.images]
    assert [a.get_title() for a in axes] == ["As — sparse", "As — dense", "As — truth"]
    with pytest.raises(SchemaError, match="hr"):
        plotting.compare_maps(ds[[schema.LR]], ["As"], ("lr",))


def test_plot_history_marks_best_epoch():
    hist = [{"epoch": i + 1, "train_loss": 1 / (i + 1), "val_loss": 0.5 + abs(i - 3) * 0.1}
            for i in range(10)]
    ax = plotting.plot_history(hist)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train loss", "validation loss", "best epoch 4"]
    assert ax.lines[-1].get_xdata()[0] == 4
    only_train = plotting.plot_history([{"loss": 3.0}, {"loss": 2.0}])
    assert "best epoch 2" in [t.get_text() for t in only_train.get_legend().get_texts()]
    with pytest.raises(DataError):
        plotting.plot_history([])


@pytest.mark.parametrize("kind", ["cf", "int", "str"])
def test_plot_block_roles(kind, tmp_path):
    ds = make_ds()
    codes = (np.arange(ds.sizes["y"])[:, None] // 4 % 4).repeat(ds.sizes["x"], 1)  # 0 = none
    attrs = {}
    if kind == "str":
        values = np.array(["", "train", "validation", "test"])[codes]
    elif kind == "cf":  # as BlockSplitter.split writes it, codes shuffled to test the attrs
        values = np.array([7, 3, 5, 4], "int8")[codes]
        attrs = {"flag_values": [7, 3, 5, 4], "flag_meanings": "none train val test"}
    else:
        values = codes.astype("int8")
    roles = xr.DataArray(values, dims=("y", "x"), coords={"y": ds.y, "x": ds.x}, attrs=attrs)
    ax = plotting.plot_block_roles(roles)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train", "val", "test", "not used"]
    img = ax.images[0].get_array()
    assert set(np.unique(img.compressed())) == {0, 1, 2}
    assert np.ma.getmaskarray(img)[:4].all()
    _km_limits_ok(ax, ds)
    ax.figure.savefig(tmp_path / "roles.png", dpi=60)


def test_png_output(tmp_path):
    ds = make_ds(ny=40, nx=60)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    plotting.plot_map(ds, schema.LR, "Au", ax=axes[0], hatch=schema.AOA)
    plotting.plot_map(ds, schema.LITHOLOGY, ax=axes[1])
    out = tmp_path / "maps.png"
    fig.savefig(out, dpi=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_maps_shows_sites_blocks_and_the_area_of_applicability():
    """What the dataset holds is drawn: sparse sites on the sparse map, cells outside the
    area of applicability hatched on the prediction, validation and test blocks outlined
    on the dense map, each named in a legend."""
    ds = make_ds()
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    sites = np.zeros((ny, nx), np.int16)
    sites[::7, ::7] = 1
    aoa = np.ones((ny, nx), bool)
    aoa[:, : nx // 4] = False
    roles = np.ones((ny, nx), np.int8)
    roles[: ny // 2, nx // 2:] = 2
    roles[ny // 2:, nx // 2:] = 3
    grid = {"y": ds.y, "x": ds.x}
    ds = ds.assign(lr_sites=(("y", "x"), sites), aoa=(("y", "x"), aoa))
    fig = plotting.compare_maps(ds, ["Au"], roles=xr.DataArray(roles, dims=("y", "x"),
                                                                coords=grid))
    labels = {t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().texts}
    assert {"sparse sites", "outside area", "validation blocks", "test blocks"} <= labels
