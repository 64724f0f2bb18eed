"""The model's network in a process: built once per digest and device, run on batches of
windows, with the spread of an ensemble's members or of the 8 rotations/mirrors when asked.

``torch`` is imported inside functions only, so that Dask workers importing
:mod:`geochem_sr` do not pay for it until they predict.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geochem_sr.models import GeoSRModel

__all__ = [
    "MAX_BATCH_CELLS",
    "NetworkRun",
    "clear_cache",
    "device_of",
    "forward",
    "in_dask_worker",
    "network",
    "predict_whole",
    "spread_source",
]

#: Largest number of cells run through the network in one forward (memory bound).
MAX_BATCH_CELLS = 512 * 512

_NETS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_NETS_LOCK = threading.Lock()
_FORWARD_LOCK = threading.Lock()
_MAX_CACHED_NETS = 2
_THREADS_SET = False


def in_dask_worker() -> bool:
    """Whether this code runs inside a ``dask.distributed`` worker."""
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def device_of(device: Any) -> str:
    """The torch device to run on: the given one, else CUDA when available, else CPU."""
    if device is not None:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def spread_source(model: GeoSRModel) -> str:
    """Where the model's spread comes from: ``model.prediction.spread``, else
    :data:`~geochem_sr.models.DEFAULT_SPREAD`."""
    from geochem_sr.models import DEFAULT_SPREAD

    return model.prediction.spread or DEFAULT_SPREAD


def clear_cache() -> None:
    """Forget the networks built in this process (the next prediction builds them again)."""
    with _NETS_LOCK:
        _NETS.clear()


def network(model: GeoSRModel, digest: str, device: str) -> Any:
    """The model's network in eval mode, built once per process, digest and device.

    Inside a ``dask.distributed`` worker process torch runs with 1 thread (the worker's
    threads are the parallelism; ``GEOCHEM_SR_TORCH_THREADS`` changes that). A worker
    that is a thread of the caller's own process (``LocalCluster(processes=False)``)
    leaves torch's thread count as the caller set it.
    """
    global _THREADS_SET
    key = (digest, device)
    with _NETS_LOCK:
        net = _NETS.get(key)
        if net is not None:
            _NETS.move_to_end(key)
            return net
        import torch

        if not _THREADS_SET and in_dask_worker() and multiprocessing.parent_process():
            torch.set_num_threads(max(1, int(os.environ.get("GEOCHEM_SR_TORCH_THREADS", 1))))
        _THREADS_SET = True
        net = model.build_network(device)
        if device == "cpu":
            net = net.to(memory_format=torch.channels_last)
        _NETS[key] = net
        while len(_NETS) > _MAX_CACHED_NETS:
            _NETS.popitem(last=False)
        return net


def forward(net: Any, x: np.ndarray, device: str, members: bool = False
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Run the network on a batch ``(N, C, H, W)`` float32 -> ``(N, E, H, W)`` float32.

    With ``members`` (an ensemble) ``(mean, spread)`` is returned
    (:meth:`~geochem_sr.models.ensemble.Ensemble.mean_and_spread`: the same mean as its
    forward, and the members' standard deviation). In a plain process forwards are serialised by a
    lock (each uses torch's own thread pool); in a Dask worker they are not.
    """
    import torch

    lock = _FORWARD_LOCK if not in_dask_worker() else _NullLock()
    with lock, torch.inference_mode():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        if device == "cpu":
            t = t.contiguous(memory_format=torch.channels_last)
        if not members:
            return net(t).float().cpu().numpy()  # (channels-last strides; callers copy)
        mean, spread = net.mean_and_spread(t)
        return mean.float().cpu().numpy(), spread.float().cpu().numpy()


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True)
class NetworkRun:
    """A model's network and how it is run on windows.

    Attributes
    ----------
    model : GeoSRModel
    digest : str
        ``model.digest``: its network is built once per process, digest and device.
    device : str
        Torch device (:func:`device_of`).
    tta : bool
        Also compute the spread behind ``hr_pred_std``, from where the model says
        (:func:`spread_source`): an ensemble's members, or the 8 rotations/mirrors.
    batch_size : int or None
        Windows per forward; None: as many as :data:`MAX_BATCH_CELLS` cells allow.
    """

    model: GeoSRModel
    digest: str
    device: str
    tta: bool = False
    batch_size: int | None = None


def predict_whole(
    run: NetworkRun, windows: Sequence[np.ndarray]
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Predict zero-filled windows ``(C, h, w)``; yield ``(index, residual, spread)``.

    Windows of the same shape are batched. With ``run.tta`` and spread from
    ``"orientations"`` each window is predicted under the 8 rotations/mirrors (aspect
    vector turned with the map), each prediction is turned back, and the mean and the
    standard deviation (ddof 0) over the 8 are returned; with ``"members"`` the ensemble's
    mean (the same as without ``tta``) and its members' standard deviation.
    """
    from geochem_sr.features import N_AUGMENTATIONS, augment, inverse_augmentation

    model, device = run.model, run.device
    net = network(model, run.digest, device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(tuple(w.shape), []).append(i)
    for shape, idx in groups.items():
        cells = int(shape[1]) * int(shape[2])
        n = run.batch_size or max(1, MAX_BATCH_CELLS // max(cells, 1))
        for start in range(0, len(idx), n):
            part = idx[start:start + n]
            xb = windows[part[0]][None] if len(part) == 1 else np.stack(
                [windows[i] for i in part])  # one window: a view, not a copy
            if run.tta and spread_source(model) == "members":
                mean_m, spread_m = forward(net, xb, device, members=True)
                for j, i in enumerate(part):
                    yield i, mean_m[j], spread_m[j]
                continue
            if not run.tta:
                yb = forward(net, xb, device)
                for j, i in enumerate(part):
                    yield i, yb[j], None
                continue
            total = sq = None
            for k in range(N_AUGMENTATIONS):
                xk, _ = augment(xb, None, k, model.channels)
                yk = forward(net, xk, device)
                yk, _ = augment(yk, None, inverse_augmentation(k))
                yk = yk.astype(np.float64)
                total = yk if total is None else total + yk
                sq = yk * yk if sq is None else sq + yk * yk
            mean = total / N_AUGMENTATIONS
            spread = np.sqrt(np.maximum(sq / N_AUGMENTATIONS - mean * mean, 0.0))
            for j, i in enumerate(part):
                yield i, mean[j].astype(np.float32), spread[j].astype(np.float32)
