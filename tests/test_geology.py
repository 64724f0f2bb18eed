"""Tests of geochem_sr.covariates.geology: rasterizing units, sentences, word vectors, embedding."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology import (
    GeologyVocabulary,
    GeologyWarning,
    embed_codes,
    embed_geology,
    embedding_table,
    lithology_units,
    plot_units,
    rasterize_geology,
    train_unit_vectors,
    unit_adjacency,
    unit_names,
    unit_sentences,
    vocabulary_of,
)
from geochem_sr.errors import (
    CRSError,
    DataError,
    InputFileError,
    ModelMismatchError,
    ParameterError,
    SchemaError,
)

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 4_000_000.0  # a real place in UTM zone 50N
CELL = 50.0
REPO = Path(__file__).resolve().parents[1]


def box(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    """A rectangle in metres relative to (X0, Y0)."""
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def grid(width: float = 2000.0, height: float = 1000.0) -> xr.Dataset:
    return schema.make_grid((X0, Y0, X0 + width, Y0 + height), CELL, CRS)


def band_geology(names=("A", "B", "C", "D"), width=500.0, height=1000.0) -> gpd.GeoDataFrame:
    """Vertical bands A|B|C|D: each unit touches only its neighbours."""
    geoms = [box(i * width, 0, (i + 1) * width, height) for i in range(len(names))]
    return gpd.GeoDataFrame({"unit": list(names)}, geometry=geoms, crs=CRS)


def lith_from_codes(codes: np.ndarray, units: list[str]) -> xr.DataArray:
    """A lithology DataArray built directly from codes (rows north to south)."""
    ny, nx = codes.shape
    g = schema.make_grid((X0, Y0, X0 + nx * CELL, Y0 + ny * CELL), CELL, CRS)
    return xr.DataArray(
        codes.astype(np.int16),
        coords={"y": g.y, "x": g.x},
        dims=("y", "x"),
        name="lithology",
        attrs={"flag_values": list(range(len(units))), "units_json": json.dumps(units)},
    )


def quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeologyWarning)
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# rasterize_geology
# ---------------------------------------------------------------------------------------
def test_rasterized_areas_match_polygon_areas_within_one_cell_per_boundary():
    # rectangles whose edges fall between cell centres at odd places
    geoms = [
        box(37.0, 12.0, 811.0, 433.0),
        box(811.0, 12.0, 1333.3, 977.7),
        box(140.5, 433.0, 611.1, 902.2),
        box(1490.0, 160.0, 1970.0, 540.0),
    ]
    names = ["Sandstone", "Granite", "Shale", "Basalt"]
    geo = gpd.GeoDataFrame({"unit": names}, geometry=geoms, crs=CRS)
    lith = rasterize_geology(geo, grid())
    codes = lith.values
    units = lithology_units(lith)
    assert units == sorted(names)
    for name, geom in zip(names, geoms, strict=True):
        cells = int((codes == units.index(name)).sum())
        perimeter_cells = geom.length / CELL
        assert cells > 0
        assert abs(cells * CELL**2 - geom.area) <= perimeter_cells * CELL**2, name
    # cells no polygon covers are -1; and a cell far from all polygons is one of them
    assert (codes == -1).sum() == codes.size - sum((codes == k).sum() for k in range(4))
    assert codes[0, -1] == -1


def test_lithology_schema_attributes_and_crs():
    geo = band_geology(("Triassic granite", "Cenozoic  sediments", "A"))
    lith = rasterize_geology(geo, grid())
    assert lith.name == schema.LITHOLOGY
    assert lith.dims == (schema.Y, schema.X)
    assert lith.dtype == np.int16
    assert lith.attrs["flag_values"] == [0, 1, 2]
    assert lith.attrs["flag_meanings"] == "A Cenozoic_sediments Triassic_granite"
    assert json.loads(lith.attrs["units_json"]) == ["A", "Cenozoic  sediments", "Triassic granite"]
    assert lith.rio.crs.to_epsg() == 32650
    np.testing.assert_array_equal(lith.x, grid().x)
    # the band of 500 m at 50 m cells is 10 columns wide
    np.testing.assert_array_equal(lith.values[0, :30], np.repeat([2, 1, 0], 10))
    assert (lith.values[:, 30:] == -1).all()
    schema.validate(grid().assign(lithology=lith), require=())


def test_units_order_given_and_unlisted_units_appended_with_warning():
    geo = band_geology(("A", "B", "C"))
    lith = rasterize_geology(geo, grid(), units=["C", "A", "B"])
    assert lithology_units(lith) == ["C", "A", "B"]
    assert lith.values[0, 0] == 1  # A
    with pytest.warns(GeologyWarning, match=r"\['B'\].*not in the given `units`"):
        lith = rasterize_geology(geo, grid(), units=["C", "A"])
    assert lithology_units(lith) == ["C", "A", "B"]
    with pytest.raises(SchemaError, match="duplicates"):
        rasterize_geology(geo, grid(), units=["A", "A"])


def test_ascending_y_grid_gives_the_same_map_flipped():
    geo = band_geology()
    geo.loc[len(geo)] = ["E", box(100, 100, 900, 300)]  # a body to break the symmetry in y
    g = grid()
    down = quiet(rasterize_geology, geo, g)
    up = quiet(rasterize_geology, geo, g.sortby("y"))
    assert np.diff(up.y.values)[0] > 0
    np.testing.assert_array_equal(up.values, down.values[::-1])
    np.testing.assert_array_equal(up.sortby("y", ascending=False).values, down.values)


def test_missing_unit_column_names_the_column_and_lists_the_columns():
    geo = band_geology().rename(columns={"unit": "LITHO"})
    with pytest.raises(InputFileError, match=r"'unit'.*\['LITHO'\]"):
        rasterize_geology(geo, grid())
    lith = rasterize_geology(geo, grid(), unit_column="LITHO")
    assert lithology_units(lith) == ["A", "B", "C", "D"]


def test_geology_without_crs_and_non_polygons_are_rejected():
    geo = band_geology().set_crs(None, allow_override=True)
    with pytest.raises(CRSError, match="geology"):
        rasterize_geology(geo, grid())
    geo = band_geology()
    geo.loc[len(geo)] = ["Fault", shapely.LineString([(X0, Y0), (X0 + 500, Y0 + 500)])]
    with pytest.raises(InputFileError, match="Fault.*LineString"):
        rasterize_geology(geo, grid())


def test_empty_geometries_and_unnamed_units_are_skipped_with_a_warning():
    geo = band_geology(("A", "B"))
    geo.loc[len(geo)] = ["Ghost", shapely.Polygon()]
    geo.loc[len(geo)] = [None, box(1000, 0, 1500, 1000)]
    with pytest.warns(GeologyWarning) as rec:
        lith = rasterize_geology(geo, grid())
    messages = " ".join(str(w.message) for w in rec)
    assert "Ghost" in messages and "empty" in messages
    assert "feature 3" in messages and "no name" in messages
    assert lithology_units(lith) == ["A", "B"]
    assert (lith.values[:, 20:] == -1).all()
    empty = gpd.GeoDataFrame({"unit": ["X"]}, geometry=[shapely.Polygon()], crs=CRS)
    with pytest.raises(DataError, match="at least one polygon"):
        quiet(rasterize_geology, empty, grid())


def test_overlapping_polygons_smaller_wins_in_any_row_order_and_warns():
    host = box(0, 0, 1000, 1000)
    stock = box(300, 300, 600, 600)
    geo = gpd.GeoDataFrame({"unit": ["Schist", "Granite"]}, geometry=[host, stock], crs=CRS)
    with pytest.warns(GeologyWarning, match=r"overlap.*'Schist'.*'Granite'"):
        a = rasterize_geology(geo, grid())
    with pytest.warns(GeologyWarning, match="overlap"):
        b = rasterize_geology(geo.iloc[::-1], grid())
    np.testing.assert_array_equal(a.values, b.values)
    granite = lithology_units(a).index("Granite")
    assert (a.values == granite).sum() == 36  # the 300 m square: 6 x 6 cells
    # overlap="last": the later row wins, so the host buries the stock
    with pytest.warns(GeologyWarning, match="later row wins"):
        c = rasterize_geology(geo.iloc[::-1], grid(), overlap="last")
    assert (c.values == granite).sum() == 0
    # polygons that only share an edge are not an overlap
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeologyWarning)
        rasterize_geology(band_geology(), grid())


def test_bow_tie_polygon_is_repaired_with_a_warning_naming_it():
    bow = shapely.Polygon(
        [(X0 + 100, Y0 + 100), (X0 + 700, Y0 + 700), (X0 + 700, Y0 + 100), (X0 + 100, Y0 + 700)]
    )
    assert not bow.is_valid
    geo = gpd.GeoDataFrame({"unit": ["Tonalite"]}, geometry=[bow], crs=CRS)
    with pytest.warns(GeologyWarning, match=r"feature 0 \(unit 'Tonalite'\).*Self-intersection"):
        lith = rasterize_geology(geo, grid())
    # two triangles of 300 x 600 / 2 each = 180000 m2 in all, i.e. 72 cells
    repaired = shapely.make_valid(bow)
    cells = int((lith.values == 0).sum())
    assert abs(cells * CELL**2 - repaired.area) <= repaired.length * CELL
    assert cells > 50
    with pytest.raises(InputFileError, match="Tonalite.*invalid"):
        rasterize_geology(geo, grid(), repair=False)
    flat = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 200, Y0 + 200)])
    geo = gpd.GeoDataFrame({"unit": ["Sliver"]}, geometry=[flat], crs=CRS)
    with pytest.raises(InputFileError, match="Sliver.*cannot"):
        rasterize_geology(geo, grid())


@pytest.mark.parametrize("other_crs", ["EPSG:4326", "EPSG:32651"])
def test_geology_in_another_crs_is_reprojected(other_crs):
    geo = band_geology()
    geo.loc[len(geo)] = ["E", box(1200, 200, 1700, 700)]
    expected = quiet(rasterize_geology, geo, grid())
    moved = geo.to_crs(other_crs)
    assert abs(moved.geometry.iloc[0].bounds[0] - X0) > 1000  # really other coordinates
    got = quiet(rasterize_geology, moved, grid())
    assert lithology_units(got) == lithology_units(expected)
    # straight edges bend slightly under reprojection: at most a few boundary cells differ
    differ = got.values != expected.values
    assert differ.sum() <= 4
    for code in range(5):
        yy, xx = np.nonzero(expected.values == code)
        y2, x2 = np.nonzero(got.values == code)
        assert abs(xx.mean() - x2.mean()) < 0.5 and abs(yy.mean() - y2.mean()) < 0.5


def _voronoi_geology(n=25, seed=3, size=2000.0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    pts = shapely.points(rng.uniform(0, size, (n, 2)) + [X0, Y0])
    frame = shapely.box(X0, Y0, X0 + size, Y0 + size)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame))
    geoms = [shapely.intersection(c, frame) for c in cells]
    return gpd.GeoDataFrame({"unit": [f"U{i % 7}" for i in range(n)]}, geometry=geoms, crs=CRS)


def test_chunked_rasterization_equals_whole_grid():
    geo = _voronoi_geology()
    g = grid(2000.0, 2000.0)
    whole = rasterize_geology(geo, g)
    lazy = rasterize_geology(geo, g, chunks={"y": 13, "x": 17})
    assert isinstance(lazy.data, dsa.Array)
    assert lazy.data.chunks[0][0] == 13
    np.testing.assert_array_equal(lazy.values, whole.values)
    assert lazy.attrs == whole.attrs
    # a dask-chunked grid gives a chunked lithology by itself
    chunked = g.assign(z=(("y", "x"), np.zeros((40, 40)))).chunk({"y": 16, "x": 16})
    auto = rasterize_geology(geo, chunked)
    assert auto.data.chunks == ((16, 16, 8), (16, 16, 8))
    np.testing.assert_array_equal(auto.values, whole.values)


# ---------------------------------------------------------------------------------------
# sentences
# ---------------------------------------------------------------------------------------
def test_unit_adjacency_counts_shared_cell_sides():
    lith = rasterize_geology(band_geology(), grid())  # 20 rows, bands 10 cells wide
    units, adj = unit_adjacency(lith)
    assert units == ["A", "B", "C", "D"]
    expected = np.zeros((4, 4), dtype=int)
    for i in range(3):
        expected[i, i + 1] = expected[i + 1, i] = 20
    np.testing.assert_array_equal(adj, expected)


def test_transects_collapse_runs_and_break_at_no_unit_cells():
    codes = np.array(
        [
            [0, 0, 1, 1, 2, 2],
            [0, 0, 1, -1, 2, 2],
            [0, 0, 0, 0, 0, 0],
        ]
    )
    lith = lith_from_codes(codes, ["A", "B", "C"])
    sents = unit_sentences(lith, method="transects", shuffle=False)
    # rows: [A B C]; [A B] then [C] after the gap; [A]: one-unit pieces carry no context
    assert sents[:2] == [["A", "B", "C"], ["A", "B"]]
    assert ["C"] not in sents and ["A"] not in sents
    assert all(a != b for s in sents for a, b in itertools.pairwise(s))
    assert ["B", "A"] in sents and ["C", "A"] in sents  # columns 2 and 4, north to south
    assert ["B", "C", "A"] in sents  # the NW-SE diagonal from row 0, column 3
    with pytest.raises(ParameterError, match="method"):
        unit_sentences(lith, method="sonnets")


def test_walks_step_only_between_touching_units_and_are_seeded():
    lith = rasterize_geology(band_geology(("A", "B", "C", "D", "E")), grid(2500.0))
    units, adj = unit_adjacency(lith)
    sents = unit_sentences(lith, method="walks", n_walks=10, walk_length=15, seed=1)
    assert len(sents) == 5 * 10
    assert all(len(s) == 15 for s in sents)
    for s in sents:
        for a, b in itertools.pairwise(s):
            assert adj[units.index(a), units.index(b)] > 0, (a, b)
    again = unit_sentences(lith, method="walks", n_walks=10, walk_length=15, seed=1)
    other = unit_sentences(lith, method="walks", n_walks=10, walk_length=15, seed=2)
    assert sents == again
    assert sents != other
    # every unit starts walks, whatever its size
    assert {s[0] for s in sents} == set(units)


def test_every_unit_on_the_map_gets_a_sentence_and_isolated_units_one_word():
    codes = np.full((10, 10), -1)
    codes[:5, :5] = 0
    codes[:5, 5:] = 1
    codes[8, 8] = 2  # an isolated unit, surrounded by no-unit cells
    lith = lith_from_codes(codes, ["A", "B", "Lonely", "Absent"])
    for method in ("walks", "transects", "transects+walks"):
        sents = unit_sentences(lith, method=method, n_walks=3)
        tokens = {t for s in sents for t in s}
        assert tokens == {"A", "B", "Lonely"}, method
        assert ["Lonely"] in sents


def test_attribute_tokens_follow_units_and_get_no_vector():
    lith = rasterize_geology(band_geology(("A", "B", "C")), grid(1500.0))
    attrs = {"A": {"age": "Triassic", "class": "granite"}, "C": {"class": "granite"}}
    sents = unit_sentences(lith, method="walks", n_walks=5, attributes=attrs)
    flat = [t for s in sents for t in s]
    for k, tok in enumerate(flat):
        if tok == "A":
            assert flat[k + 1 : k + 3] == ["@age=Triassic", "@class=granite"]
        if tok == "B":
            assert k + 1 == len(flat) or not flat[k + 1].startswith("@")
    vocab = train_unit_vectors(sents, seed=0, window=9)
    assert vocab.units == ("A", "B", "C")
    with pytest.raises(ParameterError, match="attributes"):
        unit_sentences(lith, attributes={"A": "granite"})


# ---------------------------------------------------------------------------------------
# word vectors
# ---------------------------------------------------------------------------------------
def _cosine(vocab: GeologyVocabulary) -> np.ndarray:
    v = vocab.vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v @ v.T


@pytest.mark.parametrize(
    "names",
    [("A", "B", "C", "D"), ("S1", "S2", "S3", "S4", "S5", "S6", "S7")],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_units_sharing_long_boundaries_are_closer_than_units_that_never_touch(names, seed):
    lith = rasterize_geology(band_geology(names, width=300.0), grid(300.0 * len(names)))
    ds = embed_geology(grid(300.0 * len(names)), band_geology(names, width=300.0), seed=seed)
    vocab = vocabulary_of(ds)
    units, adj = unit_adjacency(lith)
    assert vocab.units == tuple(units)
    cos = _cosine(vocab)
    pairs = list(itertools.combinations(range(len(units)), 2))
    touching = [cos[i, j] for i, j in pairs if adj[i, j] > 0]
    never = [cos[i, j] for i, j in pairs if adj[i, j] == 0]
    assert np.mean(touching) > np.mean(never) + 0.3


def test_long_boundaries_beat_short_ones_on_an_irregular_map():
    geo = _voronoi_geology(n=12, seed=1)
    geo["unit"] = [f"U{i}" for i in range(len(geo))]
    ds = embed_geology(grid(2000.0, 2000.0), geo, seed=0)
    units, adj = unit_adjacency(ds.lithology)
    vocab = vocabulary_of(ds)
    cos = _cosine(vocab)
    pairs = list(itertools.combinations(range(len(units)), 2))
    touching = [cos[i, j] for i, j in pairs if adj[i, j] > 0]
    never = [cos[i, j] for i, j in pairs if adj[i, j] == 0]
    assert len(never) >= 10 and len(touching) >= 10
    assert np.mean(touching) > np.mean(never) + 0.2


def test_word_vectors_are_seeded_and_deterministic_in_process():
    lith = rasterize_geology(band_geology(), grid())
    sents = unit_sentences(lith, seed=0)
    a = train_unit_vectors(sents, seed=0)
    b = train_unit_vectors(sents, seed=0)
    c = train_unit_vectors(sents, seed=1)
    assert a.vectors.dtype == np.float32 and a.vectors.shape == (4, 5)
    assert a.vectors.tobytes() == b.vectors.tobytes()
    assert not np.array_equal(a.vectors, c.vectors)
    assert train_unit_vectors(sents, vector_size=3).vectors.shape == (4, 3)


_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np, xarray as xr
    from geochem_sr.covariates.geology import train_unit_vectors, unit_sentences
    codes = np.repeat(np.repeat(np.arange(5).reshape(1, 5), 12, axis=0), 6, axis=1)
    codes[3:8, 8:14] = 5  # a stock across a boundary
    codes[10:, :4] = -1
    units = ["Granite", "Cenozoic sediments", "Schist", "Basalt", "Tonalite", "Stock"]
    lith = xr.DataArray(codes.astype("int16"), dims=("y", "x"),
                        attrs={"units_json": json.dumps(units)})
    sentences = unit_sentences(lith, method="transects+walks", seed=7)
    vocab = train_unit_vectors(sentences, seed=7)
    sys.stdout.write("|".join(vocab.units) + "\\n" + vocab.vectors.tobytes().hex())
    """
)


def _child_vectors(hashseed: str) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=True,
    ).stdout
    units, hexed = out.strip().split("\n")
    return units.split("|"), hexed


def test_vectors_bit_identical_in_another_process_with_another_hash_seed():
    ns: dict = {}
    exec(_CHILD.replace("sys.stdout.write", "result = "), ns)
    here = ns["vocab"]
    assert len(here.units) == 6
    mine = os.environ.get("PYTHONHASHSEED", "random")
    other = "12345" if mine != "12345" else "54321"
    units, hexed = _child_vectors(other)
    assert units == list(here.units)
    assert hexed == here.vectors.tobytes().hex()


# ---------------------------------------------------------------------------------------
# GeologyVocabulary
# ---------------------------------------------------------------------------------------
def _vocab() -> GeologyVocabulary:
    vec = np.arange(15, dtype=np.float32).reshape(3, 5) / 7.0
    return GeologyVocabulary(("A", "B", "C"), vec, {"seed": 0})


def test_vocabulary_unknown_unit_warns_and_gets_the_mean_vector():
    vocab = _vocab()
    mean = vocab.vectors.astype(np.float64).mean(axis=0).astype(np.float32)
    np.testing.assert_array_equal(vocab.fallback, mean)
    np.testing.assert_allclose(vocab.fallback, vocab.vectors.mean(axis=0), rtol=1e-6)
    with pytest.warns(GeologyWarning, match=r"\['Marble'\].*mean"):
        out = vocab.lookup(["B", "Marble", "A"])
    assert out.dtype == np.float32 and out.shape == (3, 5)
    np.testing.assert_array_equal(out[0], vocab.vector("B"))
    np.testing.assert_array_equal(out[1], vocab.fallback)
    np.testing.assert_array_equal(out[2], vocab.vectors[0])
    with pytest.raises(ModelMismatchError, match="Marble"):
        vocab.vector("Marble")
    assert "A" in vocab and "Marble" not in vocab and len(vocab) == 3


def test_vocabulary_json_round_trip_is_exact_and_frozen():
    rng = np.random.default_rng(0)
    vocab = GeologyVocabulary(("Grès", "Granite rose"), rng.normal(size=(2, 5)), {"seed": 3})
    back = GeologyVocabulary.from_json(vocab.to_json())
    assert back == vocab
    assert back.vectors.tobytes() == vocab.vectors.tobytes()
    assert back.params == {"seed": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocab.units = ("X",)
    with pytest.raises(ValueError):
        vocab.vectors[0, 0] = 1.0
    with pytest.raises(SchemaError, match="units"):
        GeologyVocabulary.from_json('{"vectors": []}')
    with pytest.raises(SchemaError, match="JSON"):
        GeologyVocabulary.from_json("not json")
    with pytest.raises(SchemaError, match="shape"):
        GeologyVocabulary(("A", "B"), np.zeros((3, 5)))
    with pytest.raises(SchemaError, match="duplicates"):
        GeologyVocabulary(("A", "A"), np.zeros((2, 5)))


def test_embedding_table_is_units_by_dimensions():
    vocab = _vocab()
    table = embedding_table(vocab)
    assert table.shape == (3, 5)
    assert list(table.index) == ["A", "B", "C"] and table.index.name == "unit"
    assert list(table.columns) == [1, 2, 3, 4, 5] and table.columns.name == "dimension"
    np.testing.assert_array_equal(table.to_numpy(), vocab.vectors)
    assert embedding_table(vocab.to_json(), decimals=4).loc["B", 1] == round(5 / 7, 4)
    with pytest.raises(SchemaError, match="geology_vocabulary"):
        embedding_table(grid())


# ---------------------------------------------------------------------------------------
# embed_geology
# ---------------------------------------------------------------------------------------
def _survey(chunks: dict | None = None) -> xr.Dataset:
    g = grid()
    ds = g.assign(elevation=(("y", "x"), np.linspace(0, 1, g.y.size * g.x.size).reshape(20, 40)))
    ds["elevation"] = ds.elevation.astype(np.float32)
    ds.attrs["title"] = "test survey"
    return ds.chunk(chunks) if chunks else ds


def _geology_with_gap() -> gpd.GeoDataFrame:
    geo = band_geology(("A", "B", "C"))  # the east quarter of the grid has no unit
    geo.loc[len(geo)] = ["Granite stock", box(600, 300, 900, 600)]
    return geo


def test_embed_geology_adds_both_variables_and_keeps_the_rest():
    ds = quiet(embed_geology, _survey(), _geology_with_gap(), seed=0)
    emb = ds[schema.GEOLOGY_EMBEDDING]
    assert emb.dims == (schema.EMBEDDING, schema.Y, schema.X)
    assert emb.dtype == np.float32 and emb.sizes[schema.EMBEDDING] == 5
    assert list(emb[schema.EMBEDDING].values) == [1, 2, 3, 4, 5]
    lith = ds[schema.LITHOLOGY].values
    assert np.isnan(emb.values[:, lith == -1]).all()
    assert np.isfinite(emb.values[:, lith >= 0]).all()
    vocab = vocabulary_of(ds)
    units = lithology_units(ds[schema.LITHOLOGY])
    for code, unit in enumerate(units):
        cell = np.argwhere(lith == code)[0]
        np.testing.assert_array_equal(emb.values[:, cell[0], cell[1]], vocab.vector(unit))
    assert ds.attrs["title"] == "test survey"
    assert "elevation" in ds and ds.rio.crs.to_epsg() == 32650
    schema.validate(ds, require=(schema.LITHOLOGY, schema.GEOLOGY_EMBEDDING))
    assert embedding_table(ds).shape == (4, 5)


def test_embed_geology_numpy_and_dask_give_equal_arrays():
    plain = quiet(embed_geology, _survey(), _geology_with_gap(), seed=3)
    lazy = quiet(embed_geology, _survey({"y": 7, "x": 16}), _geology_with_gap(), seed=3)
    emb = lazy[schema.GEOLOGY_EMBEDDING]
    assert isinstance(emb.data, dsa.Array)
    assert emb.data.chunks[1:] == ((7, 7, 6), (16, 16, 8))
    assert isinstance(lazy[schema.LITHOLOGY].data, dsa.Array)
    np.testing.assert_array_equal(emb.values, plain[schema.GEOLOGY_EMBEDDING].values)
    np.testing.assert_array_equal(lazy.lithology.values, plain.lithology.values)
    assert lazy.attrs[schema.ATTR_GEOLOGY_VOCAB] == plain.attrs[schema.ATTR_GEOLOGY_VOCAB]


def test_vocabulary_round_trips_through_attrs_and_applies_to_another_map():
    ds = quiet(embed_geology, _survey(), _geology_with_gap(), seed=0, vector_size=4)
    vocab = vocabulary_of(ds)
    assert vocab.vector_size == 4
    assert set(vocab.units) == {"A", "B", "C", "Granite stock"}
    assert vocab.params["seed"] == 0 and vocab.params["vector_size"] == 4
    # through netCDF-like serialisation: attrs must be plain strings
    again = vocabulary_of(xr.Dataset(attrs=json.loads(json.dumps(ds.attrs))))
    assert again == vocab
    # a new map with a unit the vocabulary never saw: fallback + warning naming it
    new_geo = band_geology(("A", "Marble", "C"))
    with pytest.warns(GeologyWarning, match=r"\['Marble'\]"):
        applied = embed_geology(_survey(), new_geo, vocabulary=vocab)
    assert vocabulary_of(applied) == vocab
    emb = applied[schema.GEOLOGY_EMBEDDING].values
    np.testing.assert_array_equal(emb[:, 0, 0], vocab.vector("A"))
    np.testing.assert_array_equal(emb[:, 0, 15], vocab.fallback)  # in the Marble band
    # re-embedding from the stored lithology with the stored vocabulary gives the same
    same = embed_geology(ds.drop_vars(schema.GEOLOGY_EMBEDDING), vocabulary=vocab)
    np.testing.assert_array_equal(
        same[schema.GEOLOGY_EMBEDDING].values, ds[schema.GEOLOGY_EMBEDDING].values
    )


def test_embed_geology_needs_polygons_or_a_lithology_map():
    with pytest.raises(SchemaError, match="lithology"):
        embed_geology(_survey())


def test_plot_units_labels_every_unit():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = quiet(embed_geology, _survey(), _geology_with_gap(), seed=0)
    ax = plot_units(vocabulary_of(ds))
    labels = sorted(t.get_text() for t in ax.texts)
    assert labels == ["A", "B", "C", "Granite stock"]
    assert ax.get_xlabel().startswith("PC1")
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (4, 2)
    assert np.isclose(np.asarray(offsets)[:, 0].mean(), 0.0, atol=1e-6)  # centred scores
    plt.close("all")


def test_embed_geology_leaves_lr_view_to_the_caller_and_the_accessor_refreshes_it():
    from geochem_sr.features import add_lr_view

    ds = quiet(embed_geology, _survey(), band_geology(), seed=0)
    sites = np.zeros((ds.sizes["y"], ds.sizes["x"]), np.int16)
    sites[1::4, 2::4] = 1
    ds = add_lr_view(ds.assign({schema.LR_SITES: (("y", "x"), sites)}))
    vocab = vocabulary_of(ds)
    other = GeologyVocabulary(vocab.units, vocab.vectors[::-1])
    stale = embed_geology(ds, vocabulary=other)  # covariates never reach up to features
    xr.testing.assert_identical(stale[schema.LR_VIEW], ds[schema.LR_VIEW])
    fresh = ds.geosr.embed_geology(vocabulary=other)
    xr.testing.assert_identical(fresh[schema.GEOLOGY_EMBEDDING], stale[schema.GEOLOGY_EMBEDDING])
    expected = add_lr_view(stale, [str(c) for c in ds[schema.COVARIATE].values])
    xr.testing.assert_allclose(fresh[schema.LR_VIEW], expected[schema.LR_VIEW])
    assert not np.allclose(fresh[schema.LR_VIEW].values, ds[schema.LR_VIEW].values)
    from geochem_sr.features import embed_geology as embed_and_view

    xr.testing.assert_identical(embed_and_view(ds, vocabulary=other), fresh)  # = gs.embed...


def test_embed_codes_is_the_embedding_step_alone():
    ds = quiet(embed_geology, _survey({"y": 7, "x": 16}), _geology_with_gap(), seed=0)
    emb = embed_codes(ds[schema.LITHOLOGY], vocabulary_of(ds))
    assert emb.chunks is not None  # lazy stays lazy
    stored = ds[schema.GEOLOGY_EMBEDDING].drop_vars(schema.SPATIAL_REF)
    xr.testing.assert_identical(emb.compute(), stored.compute())


def test_unit_names_labels_the_codes_of_a_rasterized_map():
    lith = quiet(rasterize_geology, _geology_with_gap(), grid())
    assert unit_names(lith) == dict(enumerate(lithology_units(lith)))
    assert unit_names(lith)[3] == "Granite stock"
    assert unit_names(xr.DataArray(np.zeros((2, 2), "int16"), dims=("y", "x"))) == {}
