"""Word vectors of the geological units: training them and the vocabulary that carries them.

:func:`train_unit_vectors` trains gensim Word2Vec on unit sentences, seeded and single-threaded
(bit-identical in any process); the result, a :class:`GeologyVocabulary`, travels with the
dataset (JSON in ``ds.attrs["geology_vocabulary"]``) and with every model trained on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.sentences import ATTRIBUTE_TOKEN_PREFIX
from geochem_sr.covariates.geology.units import warn_geology
from geochem_sr.errors import DataError, ModelMismatchError, ParameterError, SchemaError

__all__ = ["GeologyVocabulary", "embedding_table", "train_unit_vectors", "vocabulary_of"]

_VOCAB_FORMAT = "geochem_sr.geology_vocabulary"
_VOCAB_VERSION = 1


@dataclass(frozen=True, eq=False)
class GeologyVocabulary:
    """Unit names and their word vectors: what a dataset and a model must agree on.

    Attributes
    ----------
    units : tuple of str
        Unit names (row order of ``vectors``).
    vectors : numpy.ndarray
        (n_units, vector_size) float32, read-only.
    params : dict
        How the vectors were made (seed, method, Word2Vec settings, gensim version); carried
        along in JSON for provenance, ignored by ``==``.

    Notes
    -----
    :attr:`fallback`, the vector given to a unit the vocabulary does not know, is the mean of
    all unit vectors: the centre of the embedding, which biases no unit in particular and
    keeps the input channel in its usual range.
    """

    units: tuple[str, ...]
    vectors: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        units = tuple(str(u) for u in self.units)
        vectors = np.array(self.vectors, dtype=np.float32, copy=True, order="C")
        if vectors.ndim != 2 or vectors.shape[0] != len(units) or vectors.shape[1] < 1:
            raise SchemaError(
                f"geology vocabulary: expected vectors of shape ({len(units)}, vector_size), "
                f"found {vectors.shape}"
            )
        if len(set(units)) != len(units):
            dup = sorted({u for u in units if units.count(u) > 1})
            raise SchemaError(f"geology vocabulary: expected unique units, found duplicates {dup}")
        if not np.isfinite(vectors).all():
            raise SchemaError("geology vocabulary: expected finite vectors, found NaN or inf")
        vectors.flags.writeable = False
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "_index", {u: i for i, u in enumerate(units)})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeologyVocabulary):
            return NotImplemented
        return self.units == other.units and np.array_equal(self.vectors, other.vectors)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.units)

    def __contains__(self, unit: object) -> bool:
        return unit in self._index  # type: ignore[attr-defined]

    @property
    def vector_size(self) -> int:
        """Number of dimensions of the vectors."""
        return int(self.vectors.shape[1])

    @property
    def fallback(self) -> np.ndarray:
        """The vector for unknown units: the mean of all unit vectors (in float64, as float32)."""
        return self.vectors.astype(np.float64).mean(axis=0).astype(np.float32)

    def vector(self, unit: str) -> np.ndarray:
        """The vector of one unit; raises :class:`ModelMismatchError` if unknown.

        Use :meth:`lookup` for the fallback (with a warning) instead.
        """
        try:
            return self.vectors[self._index[unit]]  # type: ignore[attr-defined]
        except KeyError:
            raise ModelMismatchError(
                f"geology vocabulary: unit {unit!r} is unknown (known: {list(self.units)}); "
                "lookup() gives the fallback vector instead"
            ) from None

    def lookup(self, names: Iterable[str], warn: bool = True) -> np.ndarray:
        """Vectors of many units, (len(names), vector_size) float32.

        Units the vocabulary does not know get :attr:`fallback`, and a
        :class:`GeologyWarning` names them (unless ``warn=False``).
        """
        names = [str(n) for n in names]
        out = np.empty((len(names), self.vector_size), dtype=np.float32)
        unknown = []
        index = self._index  # type: ignore[attr-defined]
        for k, name in enumerate(names):
            i = index.get(name)
            if i is None:
                out[k] = self.fallback
                unknown.append(name)
            else:
                out[k] = self.vectors[i]
        if unknown and warn:
            warn_geology(
                f"geology vocabulary: units {sorted(set(unknown))} are unknown to the "
                f"vocabulary ({len(self.units)} units); they get the fallback vector "
                "(the mean of all unit vectors)"
            )
        return out

    def to_json(self) -> str:
        """JSON text ``{"format", "version", "units", "vectors", "params"}``, exact round trip."""
        return json.dumps(
            {
                "format": _VOCAB_FORMAT,
                "version": _VOCAB_VERSION,
                "units": list(self.units),
                "vectors": self.vectors.astype(np.float64).tolist(),
                "params": self.params,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> GeologyVocabulary:
        """Read a vocabulary written by :meth:`to_json` (or ``{"units", "vectors"}``)."""
        try:
            obj = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"geology vocabulary: expected JSON text, found {exc}") from None
        if not isinstance(obj, dict) or "units" not in obj or "vectors" not in obj:
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise SchemaError(
                f"geology vocabulary: expected a JSON object with 'units' and 'vectors', "
                f"found {found}"
            )
        if obj.get("version", _VOCAB_VERSION) > _VOCAB_VERSION:
            raise SchemaError(
                f"geology vocabulary: expected format version <= {_VOCAB_VERSION}, "
                f"found {obj['version']} (written by a newer geochem_sr)"
            )
        vectors = np.asarray(obj["vectors"], dtype=np.float64)
        if vectors.size == 0:
            vectors = vectors.reshape(len(obj["units"]), -1)
        return cls(tuple(obj["units"]), vectors.astype(np.float32), obj.get("params", {}))


def _is_unit_token(token: str) -> bool:
    return not token.startswith(ATTRIBUTE_TOKEN_PREFIX)


def train_unit_vectors(
    sentences: Sequence[Sequence[str]],
    vector_size: int = schema.EMBEDDING_SIZE,
    seed: int = 0,
    window: int = 5,
    epochs: int = 20,
    *,
    units: Sequence[str] | None = None,
    vectors: str = "in+out",
    **w2v_kwargs: Any,
) -> GeologyVocabulary:
    """Train Word2Vec vectors of the units, seeded and deterministic.

    Parameters
    ----------
    sentences : sequence of sequence of str
        E.g. from :func:`unit_sentences`.
    vector_size : int, default :data:`geochem_sr.schema.EMBEDDING_SIZE` (5)
        Dimensions (the paper's Table 4 has 5).
    seed : int, default 0
        Word2Vec seed. With ``workers=1`` (forced unless given) the same sentences and seed
        give bit-identical vectors in any process, whatever ``PYTHONHASHSEED``.
    window : int, default 5
        Context window.
    epochs : int, default 20
        Passes over the sentences.
    units : sequence of str, optional
        Which tokens are units (the vocabulary, in this order). Default: every token that is
        not an attribute token (``"@..."``), sorted by name.
    vectors : {"in+out", "in"}, default ``"in+out"``
        ``"in"``: Word2Vec's word vectors alone. They make units close when their contexts
        are alike (second-order similarity): on a band map A|B|C|D, A and C (both next to B)
        come out closer than A and B. ``"in+out"`` adds the context (output) vectors, which
        adds first-order similarity (units that occur together), so units that share long
        boundaries end up close — what the map should teach the network (Levy, Goldberg &
        Dagan 2015).
    **w2v_kwargs
        Passed to :class:`gensim.models.Word2Vec` (defaults here: ``sg=1``, ``negative=5``,
        ``hs=0``, ``min_count=1``, ``sample=0``, ``workers=1``).

    Returns
    -------
    GeologyVocabulary
    """
    import gensim
    from gensim.models import Word2Vec

    if vectors not in ("in+out", "in"):
        raise ParameterError(f"vectors: expected 'in+out' or 'in', found {vectors!r}")
    corpus = [[str(t) for t in s] for s in sentences if len(s) > 0]
    if not corpus:
        raise DataError("sentences: expected at least one non-empty sentence, found none")
    tokens = sorted({t for s in corpus for t in s if _is_unit_token(t)})
    order = tokens if units is None else [str(u) for u in units]
    missing = sorted(set(order) - {t for s in corpus for t in s})
    if missing:
        raise DataError(f"units: expected every unit in the sentences, found none of {missing}")
    if not order:
        raise DataError("sentences: expected unit tokens, found only attribute tokens")
    params: dict[str, Any] = {
        "sg": 1,
        "negative": 5,
        "hs": 0,
        "min_count": 1,
        "sample": 0.0,
        "workers": 1,
    }
    params.update(w2v_kwargs)
    if params["workers"] != 1:
        warn_geology(f"train_unit_vectors: workers={params['workers']} is not deterministic; use 1")
    model = Word2Vec(
        sentences=corpus,
        vector_size=int(vector_size),
        window=int(window),
        epochs=int(epochs),
        seed=int(seed),
        **params,
    )
    idx = [model.wv.key_to_index[u] for u in order]
    out = np.array(model.wv.vectors[idx], dtype=np.float32)
    if vectors == "in+out":
        ctx = model.syn1neg if params.get("negative", 0) else model.syn1
        out = out + np.asarray(ctx[idx], dtype=np.float32)
    meta = {
        "vector_size": int(vector_size),
        "seed": int(seed),
        "window": int(window),
        "epochs": int(epochs),
        "vectors": vectors,
        "gensim": gensim.__version__,
        **{k: v for k, v in params.items() if isinstance(v, int | float | str | bool)},
    }
    return GeologyVocabulary(tuple(order), out, meta)


def vocabulary_of(ds: xr.Dataset) -> GeologyVocabulary | None:
    """The geology vocabulary stored in ``ds.attrs`` by :func:`embed_geology`, or None."""
    text = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB)
    if text is None:
        return None
    return GeologyVocabulary.from_json(text)


def embedding_table(
    vocab_or_ds: GeologyVocabulary | xr.Dataset | str, decimals: int | None = None
) -> pd.DataFrame:
    """The word vectors as a table, units × dimensions 1..n, like the paper's Table 4.

    Parameters
    ----------
    vocab_or_ds : GeologyVocabulary, xarray.Dataset or str
        A vocabulary, a dataset carrying one (see :func:`vocabulary_of`) or its JSON text.
    decimals : int, optional
        Round (the paper prints 4 decimals).

    Returns
    -------
    pandas.DataFrame
        Index ``unit`` (the unit names), columns ``1..vector_size`` (named ``dimension``),
        float32 values (float64 when rounded).
    """
    if isinstance(vocab_or_ds, GeologyVocabulary):
        vocab = vocab_or_ds
    elif isinstance(vocab_or_ds, xr.Dataset):
        found = vocabulary_of(vocab_or_ds)
        if found is None:
            raise SchemaError(
                f"dataset: expected a geology vocabulary in attrs "
                f"{schema.ATTR_GEOLOGY_VOCAB!r} (run embed_geology), found attrs "
                f"{sorted(vocab_or_ds.attrs)}"
            )
        vocab = found
    elif isinstance(vocab_or_ds, str | bytes):
        vocab = GeologyVocabulary.from_json(vocab_or_ds)
    else:
        raise ParameterError(
            "embedding_table: expected a GeologyVocabulary, a Dataset or JSON text, found "
            f"{type(vocab_or_ds).__name__}"
        )
    table = pd.DataFrame(
        np.array(vocab.vectors),
        index=pd.Index(list(vocab.units), name="unit"),
        columns=pd.RangeIndex(1, vocab.vector_size + 1, name="dimension"),
    )
    return table.round(decimals) if decimals is not None else table
