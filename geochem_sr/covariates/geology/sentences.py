"""Sentences of unit names read off a lithology map, for training word vectors.

Units that occur together in the landscape share context: :func:`unit_sentences` reads
transects and random walks over the unit adjacency graph (:func:`unit_adjacency`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.units import NO_UNIT, flag_meaning, lithology_units
from geochem_sr.errors import ParameterError, SchemaError

__all__ = [
    "ATTRIBUTE_TOKEN_PREFIX",
    "DEFAULT_SENTENCE_METHOD",
    "SENTENCE_METHODS",
    "unit_adjacency",
    "unit_sentences",
]

#: Attribute tokens (``"@age=Triassic"``) start with this, so they are never taken for units.
ATTRIBUTE_TOKEN_PREFIX = "@"
#: Ways of reading sentences off the map (see :func:`unit_sentences`).
SENTENCE_METHODS = ("transects+walks", "walks", "transects")
#: Default of :func:`unit_sentences` (why: see its Notes).
DEFAULT_SENTENCE_METHOD = "transects+walks"
_MAX_TRANSECTS = 2000  # lines per direction before transects are thinned out


def _codes_array(lithology: xr.DataArray) -> np.ndarray:
    if not isinstance(lithology, xr.DataArray):
        raise SchemaError(
            f"lithology: expected an xarray.DataArray, found {type(lithology).__name__}"
        )
    if lithology.dims != (schema.Y, schema.X):
        raise SchemaError(
            f"variable 'lithology': expected dims {(schema.Y, schema.X)}, found {lithology.dims}"
        )
    if not np.issubdtype(lithology.dtype, np.integer):
        raise SchemaError(
            f"variable 'lithology': expected integer unit codes, found {lithology.dtype}"
        )
    return np.asarray(lithology.values).astype(np.int32, copy=False)


def unit_adjacency(lithology: xr.DataArray) -> tuple[list[str], np.ndarray]:
    """Shared boundary length between units, in cell sides (4-neighbour cell pairs).

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes (y, x) with unit names in attrs (see :func:`rasterize_geology`).

    Returns
    -------
    units : list of str
        Unit names in code order.
    counts : numpy.ndarray
        (n_units, n_units) int64, symmetric, zero diagonal: ``counts[i, j]`` is the number of
        pairs of edge-sharing cells with units ``i`` and ``j`` (multiply by the cell size for
        metres). Cells with no unit (-1) or codes out of range are ignored.
    """
    units = lithology_units(lithology)
    codes = _codes_array(lithology)
    return units, _adjacency_counts(codes, len(units))


def _adjacency_counts(codes: np.ndarray, n: int) -> np.ndarray:
    counts = np.zeros(n * n, dtype=np.int64)
    for a, b in ((codes[:, :-1], codes[:, 1:]), (codes[:-1, :], codes[1:, :])):
        ok = (a != b) & (a >= 0) & (b >= 0) & (a < n) & (b < n)
        counts += np.bincount((a[ok] * n + b[ok]).ravel(), minlength=n * n)
    counts = counts.reshape(n, n)
    return counts + counts.T


def _runs(line: np.ndarray) -> list[np.ndarray]:
    """Pieces of a line between no-unit cells, with consecutive duplicates collapsed."""
    out = []
    valid = line >= 0
    if not valid.any():
        return out
    edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(np.int8), 0]))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        seg = line[start:stop]
        keep = np.r_[True, seg[1:] != seg[:-1]]
        out.append(seg[keep])
    return out


def _transect_lines(codes: np.ndarray, step: int) -> Iterable[np.ndarray]:
    """Rows (W-E), columns (N-S), diagonals (NW-SE) and anti-diagonals (NE-SW), every step-th."""
    ny, nx = codes.shape
    yield from codes[::step]
    yield from codes.T[::step]
    flipped = codes[:, ::-1]
    for offset in range(-(ny - 1), nx, step):
        yield np.diagonal(codes, offset)
        yield np.diagonal(flipped, offset)


def _transects(codes: np.ndarray, n_units: int, step: int | None) -> list[np.ndarray]:
    if step is None:
        step = max(1, -(-max(codes.shape) // _MAX_TRANSECTS))
    if step < 1:
        raise ParameterError(f"transect_step: expected a positive integer, found {step}")
    codes = np.where(codes < n_units, codes, NO_UNIT)
    return [run for line in _transect_lines(codes, int(step)) for run in _runs(line)]


def _walks(
    adjacency: np.ndarray,
    present: np.ndarray,
    n_walks: int,
    walk_length: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Random walks over the unit graph; the next unit is drawn ∝ shared boundary length."""
    if n_walks < 0 or walk_length < 1:
        raise ParameterError(
            f"n_walks, walk_length: expected >= 0 and >= 1, found {n_walks}, {walk_length}"
        )
    totals = adjacency.sum(axis=1)
    cum = np.cumsum(adjacency, axis=1) / np.where(totals > 0, totals, 1)[:, None]
    walks = []
    for start in present:
        for _ in range(n_walks):
            walk = np.empty(walk_length, dtype=np.int64)
            walk[0] = cur = start
            length = 1
            for k in range(1, walk_length):
                if totals[cur] == 0:
                    break
                cur = int(np.searchsorted(cum[cur], rng.random(), side="right"))
                cur = min(cur, adjacency.shape[0] - 1)
                walk[k] = cur
                length += 1
            walks.append(walk[:length])
    return walks


def _subsample(
    lines: list[np.ndarray], share: float, other_tokens: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """A seeded random subset of ``lines`` making about ``share`` of all tokens."""
    if not 0 <= share < 1:
        raise ParameterError(f"transect_share: expected a fraction in [0, 1), found {share}")
    budget = share / (1 - share) * other_tokens
    picked, total = [], 0
    for i in rng.permutation(len(lines)):
        if total >= budget:
            break
        picked.append(lines[i])
        total += lines[i].size
    return picked


def _attribute_tokens(
    attributes: Mapping[str, Mapping[str, Any]] | None, units: Sequence[str]
) -> list[list[str]]:
    if attributes is None:
        return [[] for _ in units]
    if not isinstance(attributes, Mapping) or not all(
        isinstance(v, Mapping) for v in attributes.values()
    ):
        raise ParameterError(
            "attributes: expected {unit: {attribute: value}}, e.g. "
            "{'Granite': {'age': 'Triassic', 'class': 'intrusive'}}, "
            f"found {type(attributes).__name__}"
        )
    out = []
    for u in units:
        attrs = attributes.get(u, {})
        out.append(
            [
                f"{ATTRIBUTE_TOKEN_PREFIX}{flag_meaning(str(k))}={flag_meaning(str(v))}"
                for k, v in sorted(attrs.items(), key=lambda kv: str(kv[0]))
                if v is not None
            ]
        )
    return out


def unit_sentences(
    lithology: xr.DataArray,
    method: str = DEFAULT_SENTENCE_METHOD,
    n_walks: int = 50,
    walk_length: int = 20,
    seed: int = 0,
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    transect_step: int | None = None,
    transect_share: float = 0.25,
    shuffle: bool = True,
) -> list[list[str]]:
    """Read "sentences" of unit names off a lithology map, for word vectors.

    Parameters
    ----------
    lithology : xarray.DataArray
        Unit codes (y, x), e.g. from :func:`rasterize_geology`. Loaded into memory
        (2 bytes per cell) when lazy.
    method : {"transects+walks", "walks", "transects"}, default ``"transects+walks"``
        ``"walks"``: ``n_walks`` random walks of ``walk_length`` units from every unit
        present, over the unit adjacency graph, stepping to a neighbour with probability
        proportional to the shared boundary length (:func:`unit_adjacency`).
        ``"transects"``: the units crossed, in order, along every row, column, diagonal and
        anti-diagonal of the grid (consecutive duplicates collapsed; a no-unit cell ends a
        sentence; one-unit lines dropped). ``"transects+walks"``: the walks plus a seeded
        random subset of the transects making ``transect_share`` of the tokens.
    n_walks, walk_length : int
        Walks per unit and units per walk (a walk from a unit with no neighbour stops).
    seed : int, default 0
        Seed of the walks, the transect subset and the shuffling; same map + seed → same
        sentences.
    attributes : dict, optional
        ``{unit: {"age": "Triassic", "class": "intrusive"}}``: each unit token is followed by
        tokens ``"@age=Triassic"``, ``"@class=intrusive"``, so units sharing an attribute share
        context. Attribute tokens (prefix :data:`ATTRIBUTE_TOKEN_PREFIX`) get no vector of
        their own. They space units further apart in a sentence: with ``k`` attributes, widen
        the Word2Vec window about ``k + 1`` times.
    transect_step : int, optional
        Use every ``transect_step``-th line of each direction. Default: every line up to
        2000 lines per direction, thinned beyond.
    transect_share : float, default 0.25
        With ``"transects+walks"``: the fraction of all tokens that come from transects (at
        most; fewer if the map has fewer), so the mix does not change with the grid size.
    shuffle : bool, default True
        Shuffle the sentences (seeded), so that training does not see all sentences of one
        kind, then the other.

    Returns
    -------
    list of list of str
        The sentences. Every unit present on the map occurs in at least one of them (a
        one-word sentence is added when the chosen method misses a unit), so every unit on the
        map gets a vector.

    Notes
    -----
    Walks give every unit the same context whatever its size or the grid's cell size, and
    follow shared boundary length; transects keep real successions (A B C D C B A across a
    fold) but span units that never touch and grow with the grid. Capped at a quarter of the
    tokens, transects add the succession without drowning the walks: on realistic maps the
    mix ranks touching units closest a little better than walks alone, so it is the default;
    ``"walks"`` is the choice where boundary length should rank similarity most faithfully.
    """
    if method not in SENTENCE_METHODS:
        raise ParameterError(f"method: expected one of {SENTENCE_METHODS}, found {method!r}")
    units = lithology_units(lithology)
    codes = _codes_array(lithology)
    n = len(units)
    present = np.unique(codes[(codes >= 0) & (codes < n)])
    rng = np.random.default_rng(seed)
    seqs: list[np.ndarray] = []
    if "walks" in method:
        seqs += _walks(_adjacency_counts(codes, n), present, n_walks, walk_length, rng)
    if "transects" in method:
        lines = [t for t in _transects(codes, n, transect_step) if t.size > 1]
        if method == "transects+walks":
            lines = _subsample(lines, transect_share, sum(s.size for s in seqs), rng)
        seqs += lines
    seen = np.zeros(n, dtype=bool)
    for s in seqs:
        seen[s] = True
    seqs += [np.array([u]) for u in present if not seen[u]]
    if shuffle:
        seqs = [seqs[i] for i in rng.permutation(len(seqs))]
    extra = _attribute_tokens(attributes, units)
    if attributes is None:
        return [[units[c] for c in s] for s in seqs]
    return [[tok for c in s for tok in (units[c], *extra[c])] for s in seqs]
