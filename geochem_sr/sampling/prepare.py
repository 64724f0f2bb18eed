"""Training data in one call: blocks, normalisation, windows and patch datasets.

:func:`prepare_training_data` splits the grid (:class:`BlockSplitter`), fits the
normalisation on the training blocks only, lays the windows of each role and wraps them in
:class:`PatchDataset`; :class:`TrainingData` holds the result for the training loop.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.features import (
    channel_names,
    fit_normalisation,
    normalise,
    resolve_inputs,
    stack_inputs,
    target_residual,
)
from geochem_sr.jsonable import to_jsonable
from geochem_sr.sampling.blocks import (
    ROLE_NAMES,
    ROLE_TEST,
    ROLE_TRAIN,
    ROLE_VAL,
    SPLIT_ATTRS,
    BlockSplitter,
    leakage_gap,
)
from geochem_sr.sampling.dataset import DEFAULT_MAX_BYTES, PatchDataset, load_arrays
from geochem_sr.sampling.leakage import default_splitter, fallback_gaps, single_block_roles
from geochem_sr.sampling.windows import Window, patch_index

__all__ = ["TrainingData", "prepare_training_data"]


@dataclass
class TrainingData:
    """Everything the training loop needs, from :func:`prepare_training_data`.

    Windows index the full grid of the survey dataset (so ``ds.isel(y=rows, x=cols)``
    and :func:`geochem_sr.metrics.evaluate` with ``windows=test_windows`` work);
    ``inputs``/``target`` are the crop of the grid that holds them, starting at
    ``offset``.
    """

    inputs_set: str
    channels: list[str]
    elements: list[str]
    stats: dict[str, tuple[float, float]]
    roles: xr.DataArray
    train_windows: list[Window]
    val_windows: list[Window]
    test_windows: list[Window]
    train: PatchDataset
    val: PatchDataset
    test: PatchDataset
    inputs: xr.DataArray
    target: xr.DataArray
    offset: tuple[int, int] = (0, 0)
    patch_size: int = 32
    splitter: BlockSplitter | None = field(default=None, repr=False)
    blocks: dict[str, int] | None = None  # blocks of the split holding each role's cells

    def split_summary(self) -> dict[str, Any]:
        """Cells and patches per role, the split's attributes (:data:`SPLIT_ATTRS`: block
        size, gap, the leakage gap the dense map asks for, seed) and the role fractions;
        JSON-serialisable (what a model file records as ``training.split``)."""
        codes = np.asarray(self.roles.values)
        summary: dict[str, Any] = {
            "cells": {ROLE_NAMES[c]: int((codes == c).sum()) for c in range(1, len(ROLE_NAMES))},
            "patches": {"train": len(self.train_windows), "val": len(self.val_windows),
                        "test": len(self.test_windows)},
            **{k: self.roles.attrs[k] for k in SPLIT_ATTRS if k in self.roles.attrs},
        }
        if self.splitter is not None:
            summary["fractions"] = list(self.splitter.fractions)
        if self.blocks is not None:
            summary["blocks"] = dict(self.blocks)
        return json.loads(json.dumps(summary, default=to_jsonable))


def prepare_training_data(
    ds: xr.Dataset,
    inputs: str,
    elements: Sequence[str] | None = None,
    splitter: BlockSplitter | None = None,
    patch_size: int = 32,
    stride: int = 16,
    seed: int = 0,
    min_valid: float = 0.5,
    max_bytes: int = DEFAULT_MAX_BYTES,
    margin: int = 0,
) -> TrainingData:
    """Blocks, normalisation, windows and datasets in one call.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset with ``lr``, ``hr`` and the variables of ``inputs``.
    inputs : str
        Input set: ``"geochem"``, ``"geochem+terrain"``, ``"geochem+terrain+geology"``.
    elements : sequence of str, optional
        Elements to model (default all of ``ds.element``).
    splitter : BlockSplitter, optional
        Default :func:`~geochem_sr.sampling.leakage.default_splitter`: a gap of
        :func:`~geochem_sr.sampling.leakage_gap` cells (the reach of the dense map, so that
        no training target uses a held-out dense sample) and blocks of
        ``max(2 * patch_size, patch_size + 2 * gap)`` cells. A region too small for it gets
        the widest narrower gap that gives every role a patch, with a ``UserWarning``.
    patch_size, stride : int, default 32, 16
        Patch windows (:func:`~geochem_sr.sampling.windows.patch_index`).
    seed : int, default 0
        Seed of the default splitter and of the augmentations.
    min_valid : float, default 0.5
        Patches with a smaller share of known target cells are skipped.
    max_bytes : int, default 2 GiB
        The bounding box of the blocks is loaded into memory once when it fits.
    margin : int, default 0
        Cells of input context around every patch (:class:`PatchDataset`): the inputs are
        kept ``margin`` cells beyond the blocks (reflected beyond the grid). Inputs only:
        the target, hence every dense sample a patch learns from, stays inside its block.

    Returns
    -------
    TrainingData
        Normalisation statistics come from the training blocks only; the training
        dataset augments, validation and test do not.

    Raises
    ------
    DataError
        A role with a non-zero share gets no patch (blocks smaller than a patch, or too
        little data).
    """
    if elements is None:
        elements = [str(e) for e in ds[schema.ELEMENT].values]
    elements = [str(e) for e in elements]
    inputs = resolve_inputs(inputs, ds)
    groups = schema.parse_input_set(inputs)
    n_emb = 5
    if "geology" in groups and schema.GEOLOGY_EMBEDDING in ds.data_vars:
        n_emb = int(ds.sizes[schema.EMBEDDING])
    channels = channel_names(inputs, elements, n_emb)
    raw = stack_inputs(ds, channels)  # raises SchemaError early on a missing variable
    target = target_residual(ds, elements)
    valid = np.asarray(target.notnull().any(schema.ELEMENT).transpose(schema.Y, schema.X).values)
    if splitter is None:
        splitter, roles, windows = _default_split(ds, patch_size, stride, seed, min_valid,
                                                  valid)
    else:
        roles, windows = _split_windows(ds, splitter, patch_size, stride, min_valid, valid)
    role = roles.values
    blocks = None
    if isinstance(splitter, BlockSplitter):
        blocks = _role_blocks(splitter.block_ids(ds), role)
        _warn_single_area(blocks, splitter.block_cells(ds))
    rows, cols = np.flatnonzero((role > 0).any(1)), np.flatnonzero((role > 0).any(0))
    m = int(margin)
    ny, nx = role.shape
    r0, r1 = max(0, rows[0] - m), min(ny, rows[-1] + 1 + m)
    c0, c1 = max(0, cols[0] - m), min(nx, cols[-1] + 1 + m)
    crop = {schema.Y: slice(r0, r1), schema.X: slice(c0, c1)}
    raw, target = raw.isel(crop), target.isel(crop)
    if (raw.shape[0] + target.shape[0]) * raw.shape[1] * raw.shape[2] * 4 <= max_bytes:
        x, y = load_arrays([raw, target])
        raw, target = raw.copy(data=x), target.copy(data=y)

    stats = fit_normalisation(raw, role[r0:r1, c0:c1] == ROLE_TRAIN)
    norm = normalise(raw, stats)  # numpy when loaded above, else lazy (windows read later)

    def dataset(code: int, aug: bool) -> PatchDataset:
        return PatchDataset(norm, target, windows[code], augment=aug, seed=seed,
                            offset=(int(r0), int(c0)), max_bytes=max_bytes, margin=m)

    return TrainingData(
        inputs_set="+".join(groups),
        channels=channels,
        elements=elements,
        stats=stats,
        roles=roles,
        train_windows=windows[ROLE_TRAIN],
        val_windows=windows[ROLE_VAL],
        test_windows=windows[ROLE_TEST],
        train=dataset(ROLE_TRAIN, True),
        val=dataset(ROLE_VAL, False),
        test=dataset(ROLE_TEST, False),
        inputs=norm,
        target=target,
        offset=(int(r0), int(c0)),
        patch_size=int(patch_size),
        splitter=splitter,
        blocks=blocks,
    )


def _role_blocks(ids: np.ndarray, role: np.ndarray) -> dict[str, int]:
    """Blocks of the split that hold cells of each role."""
    return {ROLE_NAMES[c]: int(np.unique(ids[role == c]).size)
            for c in (ROLE_TRAIN, ROLE_VAL, ROLE_TEST)}


def _warn_single_area(blocks: dict[str, int], size: tuple[int, int]) -> None:
    """Warn when the validation or the test cells lie in a single block of the split: the
    held-out scores (and the do-no-harm verdicts, which rest on the validation cells or on
    the training ground) then describe one area and may not hold elsewhere."""
    one = single_block_roles(blocks)
    if not one:
        return
    what = " and ".join(one)
    warnings.warn(
        f"block split: the {what} cells lie in one block of {size[0]} x {size[1]} cells "
        f"(blocks per role: {blocks}): its scores describe one area of the survey, and a "
        "correction kept on them may make the map worse elsewhere. Check the test-block "
        "scores in model.summary() before using the map (README, 'Which to pick').",
        UserWarning, stacklevel=3)


def _split_windows(ds: xr.Dataset, splitter: Any, patch_size: int, stride: int,
                   min_valid: float, valid: np.ndarray
                   ) -> tuple[xr.DataArray, dict[int, list[Window]]]:
    """Roles of ``splitter`` and the patch windows of each role.

    Raises
    ------
    DataError
        No cell has a role, or a role with a non-zero share gets no patch.
    """
    roles = splitter.split(ds)
    role = roles.values
    if not (role > 0).any():
        raise DataError("block split: expected blocks with a role, found none")
    windows: dict[int, list[Window]] = {}
    for code, share in zip((ROLE_TRAIN, ROLE_VAL, ROLE_TEST), splitter.fractions, strict=True):
        windows[code] = patch_index(role == code, patch_size, stride, min_valid, valid)
        if share > 0 and not windows[code]:
            raise DataError(
                f"patches: expected {ROLE_NAMES[code]} patches of {patch_size} x {patch_size} "
                f"cells, found none (block size {splitter.block_cells(ds)} cells, "
                f"gap {splitter.gap}); use larger blocks or smaller patches"
            )
    return roles, windows


def _default_split(ds: xr.Dataset, patch_size: int, stride: int, seed: int,
                   min_valid: float, valid: np.ndarray
                   ) -> tuple[BlockSplitter, xr.DataArray, dict[int, list[Window]]]:
    """The default split (:func:`~geochem_sr.sampling.leakage.default_splitter`), with the
    leakage gap when the region affords it, else the widest narrower gap that gives every
    role a patch (with a warning: held-out scores are then optimistic)."""
    need = leakage_gap(ds) or 0
    error: DataError | None = None
    for gap in fallback_gaps(need):
        splitter = default_splitter(ds, patch_size, seed, gap=gap)
        try:
            roles, windows = _split_windows(ds, splitter, patch_size, stride, min_valid, valid)
        except DataError as exc:
            error = error or exc
            continue
        if gap < need:
            warnings.warn(
                f"block split: the region is too small for a gap of {need} cells (the reach "
                f"of the dense map) between training and held-out blocks; used {gap} cells, "
                "so held-out scores are optimistic (dense samples inside held-out blocks "
                "also shape training targets). Pass splitter= to choose.",
                UserWarning, stacklevel=3,
            )
        return splitter, roles, windows
    assert error is not None
    raise error
