"""The patch dataset: windows of the stacked inputs and the target, and a seeded loader.

:class:`PatchDataset` reads the windows and applies the 8 rotations/flips when training;
:func:`make_loader` and :func:`set_epoch` make the order and the augmentations a function
of ``(seed, epoch)`` only. Imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import GridError, ParameterError, SchemaError
from geochem_sr.features import CHANNEL, N_AUGMENTATIONS, augment
from geochem_sr.sampling.windows import Window, windows_bbox

__all__ = [
    "DEFAULT_MAX_BYTES",
    "load_arrays",
    "PatchDataset",
    "EpochSampler",
    "make_loader",
    "set_epoch",
]

#: Largest bounding box of windows (bytes) that is loaded into memory at once.
DEFAULT_MAX_BYTES = 2 * 1024**3


def load_arrays(arrays: Sequence[xr.DataArray]) -> list[np.ndarray]:
    """Load DataArrays into memory, all dask graphs in one compute (shared inputs once)."""
    import dask

    return [np.asarray(a) for a in dask.compute(*[a.data for a in arrays])]


class PatchDataset(torch.utils.data.Dataset):
    """Training examples: windows of the stacked inputs and of the target residual.

    Parameters
    ----------
    inputs : xarray.DataArray
        ``(channel, y, x)`` normalised inputs (numpy or dask), coordinate ``channel`` with
        the names (used to rotate the aspect vector when augmenting).
    target : xarray.DataArray
        ``(element, y, x)`` residual ``log10(hr) - log10(lr)``, NaN where unknown.
    windows : sequence of (slice, slice)
        Windows from :func:`~geochem_sr.sampling.windows.patch_index`, in the grid whose
        first cell is ``offset``.
    augment : bool, default False
        Apply a random one of the 8 rotations/flips to each example.
    seed : int, default 0
        The augmentation of example ``i`` in epoch ``e`` is drawn from
        ``numpy.random.default_rng([seed, e, i])``: same seed, same sequence, whatever
        the order or the worker that reads it. Set the epoch with :meth:`set_epoch`.
    offset : (int, int), default (0, 0)
        Grid index of the first row and column of ``inputs``/``target`` (when they are a
        crop of the grid the windows refer to).
    max_bytes : int, default 2 GiB
        The bounding box of all windows is loaded into memory once (one dask compute) on
        first use when it takes at most this many bytes; otherwise each window is read
        from the (dask) arrays when asked for.
    margin : int, default 0
        Cells of input context around each window: ``x`` covers the window widened by
        ``margin`` on every side, ``y`` the window itself (the loss is computed on the
        centre of the network's output). Beyond the ``inputs`` array the inputs are
        reflected, as inference pads a region's border; pass inputs that reach ``margin``
        cells past the windows wherever the grid does.

    Notes
    -----
    An item is ``(x, y, mask)``: float32 tensors ``x (C, size + 2 margin, size + 2 margin)``
    with NaN replaced by 0 (the channel mean after normalisation), ``y (E, size, size)``
    with NaN kept, and the bool ``mask`` of finite ``y``.
    """

    def __init__(
        self,
        inputs: xr.DataArray,
        target: xr.DataArray,
        windows: Sequence[Window],
        augment: bool = False,
        seed: int = 0,
        offset: tuple[int, int] = (0, 0),
        max_bytes: int = DEFAULT_MAX_BYTES,
        margin: int = 0,
    ) -> None:
        if int(margin) < 0:
            raise ParameterError(f"margin: expected a number of cells >= 0, found {margin!r}")
        if inputs.dims != (CHANNEL, schema.Y, schema.X):
            raise SchemaError(
                f"inputs: expected dims ('{CHANNEL}', 'y', 'x'), found {inputs.dims}"
            )
        if target.dims != (schema.ELEMENT, schema.Y, schema.X):
            raise SchemaError(f"target: expected dims ('element', 'y', 'x'), found {target.dims}")
        if inputs.shape[1:] != target.shape[1:]:
            raise GridError(
                f"target: expected the inputs' grid {inputs.shape[1:]}, found {target.shape[1:]}"
            )
        self.inputs = inputs
        self.target = target
        self.windows = list(windows)
        self.channels = [str(c) for c in inputs[CHANNEL].values]
        self.elements = [str(e) for e in target[schema.ELEMENT].values]
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.offset = (int(offset[0]), int(offset[1]))
        self.max_bytes = int(max_bytes)
        self.margin = int(margin)
        self._cache: tuple[np.ndarray, np.ndarray, tuple[int, int]] | None = None
        ny, nx = inputs.shape[1:]
        for rows, cols in self.windows:
            r, c = rows.start - self.offset[0], cols.start - self.offset[1]
            if r < 0 or c < 0 or rows.stop - self.offset[0] > ny or cols.stop - self.offset[1] > nx:
                raise GridError(
                    f"windows: expected windows inside the {ny} x {nx} inputs at offset "
                    f"{self.offset}, found {rows}, {cols}"
                )

    def __len__(self) -> int:
        return len(self.windows)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations of epoch ``epoch``."""
        self.epoch = int(epoch)

    def augmentation(self, index: int) -> int:
        """The augmentation (0..7) applied to example ``index`` in the current epoch."""
        if not self.augment:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return int(rng.integers(N_AUGMENTATIONS))

    def load(self) -> None:
        """Load the windows' bounding box into memory now (done on first use anyway)."""
        if self._cache is not None or not self.windows:
            return
        r0, r1, c0, c1 = windows_bbox(self.windows)
        m = self.margin
        n = ((self.inputs.shape[0] + self.target.shape[0])
             * (r1 - r0 + 2 * m) * (c1 - c0 + 2 * m) * 4)
        if n > self.max_bytes:
            return
        x, y = self._read(r0, r1, c0, c1)
        self._cache = (x, y, (r0, c0))

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs over grid rows ``r0 - margin:r1 + margin`` (columns alike), reflected
        beyond the inputs array, and the target over ``r0:r1``, ``c0:c1`` (one compute)."""
        oy, ox, m = self.offset[0], self.offset[1], self.margin
        ny, nx = self.inputs.shape[1:]
        a0, a1 = max(r0 - m - oy, 0), min(r1 + m - oy, ny)
        b0, b1 = max(c0 - m - ox, 0), min(c1 + m - ox, nx)
        x, y = load_arrays([
            self.inputs.isel({schema.Y: slice(a0, a1), schema.X: slice(b0, b1)}),
            self.target.isel({schema.Y: slice(r0 - oy, r1 - oy),
                              schema.X: slice(c0 - ox, c1 - ox)}),
        ])
        x = x.astype(np.float32, copy=False)
        pads = ((0, 0), (a0 - (r0 - m - oy), (r1 + m - oy) - a1),
                (b0 - (c0 - m - ox), (c1 + m - ox) - b1))
        if any(p for pair in pads for p in pair):
            x = np.pad(x, pads, mode="reflect")
        return x, y.astype(np.float32, copy=False)

    def _window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self.windows[index]
        m = self.margin
        self.load()
        if self._cache is not None:
            x, y, (r0, c0) = self._cache
            rs = slice(rows.start - r0, rows.stop - r0)
            cs = slice(cols.start - c0, cols.stop - c0)
            xs = slice(rs.start, rs.stop + 2 * m), slice(cs.start, cs.stop + 2 * m)
            return x[:, xs[0], xs[1]], y[:, rs, cs]
        return self._read(rows.start, rows.stop, cols.start, cols.stop)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = self._window(index)
        x, y = augment(x, y, self.augmentation(index), self.channels)  # contiguous copies
        x = np.where(np.isfinite(x), x, np.float32(0.0)).astype(np.float32, copy=False)
        y = np.asarray(y, dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(y.copy()), torch.from_numpy(np.isfinite(y))


class EpochSampler(torch.utils.data.Sampler):
    """Order of the examples in an epoch: a permutation drawn from ``(seed, epoch)``.

    Being a pure function of the seed and the epoch, the order needs no state to be saved
    for a training to resume exactly where it stopped.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = int(n), bool(shuffle), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader over a :class:`PatchDataset`.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Usually a :class:`PatchDataset`.
    batch_size : int, default 32
        The paper's batch size.
    shuffle : bool, default True
        Shuffle the examples each epoch (:class:`EpochSampler`).
    seed : int, default 0
        Seed of the order (and of the loader's generator, used for worker seeds).
    num_workers : int, default 0
        Loader processes. With workers, call :func:`set_epoch` before iterating and keep
        ``persistent_workers`` off so that each epoch's dataset reaches them.
    drop_last : bool, default False
        Drop a last incomplete batch.

    Returns
    -------
    torch.utils.data.DataLoader
        Call :func:`set_epoch` ``(loader, epoch)`` at the start of each epoch: order and
        augmentations then depend only on ``(seed, epoch)``.
    """
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=int(num_workers),
        drop_last=bool(drop_last),
        generator=torch.Generator().manual_seed(int(seed)),
    )


def set_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Set the epoch of a loader's sampler and dataset (order and augmentations)."""
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
