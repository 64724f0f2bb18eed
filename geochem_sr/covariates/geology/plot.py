"""The picture a geologist checks: units on the first two principal components of their vectors.

matplotlib is imported inside :func:`plot_units`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.covariates.geology.vectors import GeologyVocabulary, vocabulary_of
from geochem_sr.errors import SchemaError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

__all__ = ["plot_units"]


def _principal_components(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal-component scores (n, 2) and explained-variance fractions (2,)."""
    x = vectors.astype(np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    scores = np.zeros((x.shape[0], 2))
    explained = np.zeros(2)
    total = float((s**2).sum())
    for k in range(min(2, vt.shape[0])):
        v = vt[k]
        v = v if v[np.argmax(np.abs(v))] >= 0 else -v  # deterministic sign
        scores[:, k] = x @ v
        explained[k] = s[k] ** 2 / total if total > 0 else 0.0
    return scores, explained


def plot_units(
    vocab: GeologyVocabulary | xr.Dataset, ax: Axes | None = None, **scatter_kwargs: Any
) -> Axes:
    """Plot the units on the first two principal components of their vectors, labelled.

    Parameters
    ----------
    vocab : GeologyVocabulary or xarray.Dataset
        The vocabulary, or a dataset carrying one.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if None.
    **scatter_kwargs
        Passed to ``ax.scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        One labelled point per unit; axis labels give the variance each component explains.
    """
    import matplotlib.pyplot as plt

    if isinstance(vocab, xr.Dataset):
        found = vocabulary_of(vocab)
        if found is None:
            raise SchemaError(
                f"dataset: expected a geology vocabulary in attrs {schema.ATTR_GEOLOGY_VOCAB!r}"
            )
        vocab = found
    scores, explained = _principal_components(vocab.vectors)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(scores[:, 0], scores[:, 1], **({"s": 30} | scatter_kwargs))
    for (px, py), name in zip(scores, vocab.units, strict=True):
        ax.annotate(name, (px, py), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f} % of variance)")
    ax.set_title("Geological units: word vectors, first two principal components")
    ax.axhline(0, color="0.8", lw=0.5, zorder=0)
    ax.axvline(0, color="0.8", lw=0.5, zorder=0)
    return ax
