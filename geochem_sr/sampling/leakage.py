"""The gap that keeps held-out dense samples out of every training target.

The dense map of a cell is interpolated from the dense samples up to the neighbourhood
reach away (:func:`~geochem_sr.sampling.blocks.leakage_gap`). A gap that wide between
blocks of different roles means no training target uses a dense sample inside a held-out
block. This module turns the reach into a splitter (:func:`default_splitter`, blocks large
enough to keep a patch inside a training block ringed by held-out ones), lists the
narrower gaps to fall back on when a small region cannot afford it
(:func:`fallback_gaps`), and says in words what a split's gap guarantees
(:func:`describe_gap`): every report prints that line.

Only the dense survey matters: the sparse map is an input, present everywhere the model
predicts, so a sparse sample that informs both a training and a held-out cell is what
happens in use too; the dense map is the answer, so a dense sample informing both sides
hands the answer over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from geochem_sr.sampling.blocks import BlockSplitter, leakage_gap

__all__ = ["default_block_size", "default_splitter", "describe_gap", "fallback_gaps",
           "is_optimistic", "single_block_roles"]


def default_block_size(patch_size: int, gap: int) -> int:
    """Block side (cells): ``max(2 * patch_size, patch_size + 2 * gap)``.

    A training block whose neighbours are all held out loses ``gap`` cells on each side;
    what is left still holds a patch.

    Examples
    --------
    >>> default_block_size(32, 0), default_block_size(32, 23)
    (64, 78)
    """
    return max(2 * int(patch_size), int(patch_size) + 2 * int(gap))


def fallback_gaps(gap: int) -> list[int]:
    """The gaps to try, widest first: ``gap``, then 3/4, 1/2, 1/4 of it and 0.

    Examples
    --------
    >>> fallback_gaps(23)
    [23, 17, 11, 5, 0]
    """
    g = max(0, int(gap))
    return sorted({g, (3 * g) // 4, g // 2, g // 4, 0}, reverse=True)


def default_splitter(ds: Any, patch_size: int = 32, seed: int = 0,
                     fractions: Sequence[float] = (0.7, 0.15, 0.15), n_folds: int = 5,
                     gap: int | None = None) -> BlockSplitter:
    """The block splitter training uses when given none.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset (its ``hr_neighbourhood_reach_m`` attribute gives the gap).
    patch_size : int, default 32
        Training patch side (cells).
    seed : int, default 0
        Seed of the block roles.
    fractions : (float, float, float), default (0.7, 0.15, 0.15)
        Shares of train, validation and test cells.
    n_folds : int, default 5
        Folds of :meth:`BlockSplitter.folds`.
    gap : int, optional
        Gap (cells); default :func:`~geochem_sr.sampling.blocks.leakage_gap` (0 when the
        dataset does not record the reach).

    Returns
    -------
    BlockSplitter
        Blocks of :func:`default_block_size` cells, ``gap`` cells apart.
    """
    if gap is None:
        gap = leakage_gap(ds) or 0
    return BlockSplitter(default_block_size(patch_size, gap), fractions=fractions,
                         n_folds=n_folds, gap=int(gap), seed=int(seed))


def is_optimistic(record: Mapping[str, Any]) -> bool | None:
    """Whether a split's gap is narrower than the dense map's reach (``None``: unknown).

    ``record`` holds ``gap_cells`` and ``leakage_gap_cells`` (a role map's attributes, or
    a model's ``training.split``).
    """
    need = record.get("leakage_gap_cells")
    if need is None:
        return None
    return int(record.get("gap_cells", 0)) < int(need)


def single_block_roles(blocks: Mapping[str, int] | None) -> list[str]:
    """The held-out roles, in words, whose cells lie in one block of the split.

    Examples
    --------
    >>> single_block_roles({"train": 6, "val": 1, "test": 2})
    ['validation']
    """
    return [name for key, name in (("val", "validation"), ("test", "test"))
            if (blocks or {}).get(key) == 1]


def describe_gap(record: Mapping[str, Any]) -> str:
    """One line on what a split's gap guarantees, for reports.

    Examples
    --------
    >>> rec = {"gap_cells": 23, "leakage_gap_cells": 23, "hr_reach_m": 1133.0}
    >>> describe_gap(rec)[:75]
    'held-out blocks 23 cells from training, at least the reach of the dense map'
    >>> "OPTIMISTIC" in describe_gap({**rec, "gap_cells": 0})
    True
    """
    gap = int(record.get("gap_cells", 0))
    need = record.get("leakage_gap_cells")
    head = f"held-out blocks {gap} cells from training"
    one = single_block_roles(record.get("blocks"))
    if one:
        each = " each" if len(one) > 1 else ""
        head = (f"{' and '.join(one)} cells in one block of the split{each} (the scores of "
                f"one area); {head}")
    if need is None:
        return (f"{head}; the dataset does not record the reach of its dense map (build it "
                "with build_survey), so leakage was not checked")
    reach = record.get("hr_reach_m")
    span = f"{float(reach):.0f} m, {int(need)} cells" if reach is not None else \
        f"{int(need)} cells"
    if gap >= int(need):
        return (f"{head}, at least the reach of the dense map ({span}): no training target "
                "uses a held-out dense sample")
    return (f"{head}, narrower than the reach of the dense map ({span}): OPTIMISTIC, dense "
            "samples inside held-out blocks also shape training targets")
