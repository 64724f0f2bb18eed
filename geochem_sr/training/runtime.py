"""Where and how networks run: device, memory format, determinism, random states, prediction.

:func:`predict_patches` applies a trained model to a batch of normalised input patches.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from geochem_sr.models import GeoSRModel

__all__ = ["predict_patches", "pick_device", "memory_format", "channels_last_safe",
           "deterministic", "forked_rng", "seed_all", "cpu_copy", "predict_batched",
           "prepared_network", "PREDICT_BATCH"]

#: Batch size used when predicting (no gradients, so larger than the training batch).
PREDICT_BATCH = 64
#: Below this many input channels a strided 1x1 convolution is unsafe in ``channels_last``.
ONEDNN_MIN_IC = 16


def predict_patches(model: GeoSRModel, x: torch.Tensor, device: str | None = None
                    ) -> torch.Tensor:
    """Predict the residual of a batch of normalised input patches.

    Parameters
    ----------
    model : GeoSRModel
        A trained model.
    x : torch.Tensor
        ``(N, C, H, W)`` normalised inputs in the model's channel order (as a
        :class:`geochem_sr.sampling.PatchDataset` yields them); NaN is read as 0 (the mean).
        For a model trained with a margin the patches are ``size + 2 * margin`` wide and
        the output is too: its centre (``geochem_sr.training.data.centre``) lines up with
        the targets.
    device : str, optional
        Where to run (default CUDA when available, else CPU).

    Returns
    -------
    torch.Tensor
        ``(N, E, H, W)`` float32 on the CPU: the predicted ``log10(hr) - log10(lr)``.

    Raises
    ------
    ParameterError
        ``x`` does not have the model's channels, or ``device`` is unknown.
    """
    import torch

    if x.ndim != 4 or x.shape[1] != len(model.channels):
        raise ParameterError(
            f"x: expected a tensor (N, {len(model.channels)}, H, W) for channels "
            f"{model.channels}, found shape {tuple(x.shape)}"
        )
    net, dev, fmt = prepared_network(model, device)
    return predict_batched(net, torch.nan_to_num(x.float()), dev, fmt)


def prepared_network(model: GeoSRModel, device: str | None = None
                     ) -> tuple[torch.nn.Module, torch.device, torch.memory_format]:
    """A model's network, built once, on its device and in its memory format.

    Returns
    -------
    tuple
        The network in eval mode, the device (:func:`pick_device`) and the memory format
        (:func:`memory_format`), as :func:`predict_batched` takes them.
    """
    dev = pick_device(device)
    net = model.build_network(device=str(dev))
    fmt = memory_format(dev, net)
    return net.to(memory_format=fmt), dev, fmt


def pick_device(device: str | None) -> torch.device:
    """The torch device of ``device``: CUDA when available, else CPU, by default.

    Raises
    ------
    ParameterError
        An unknown device, or CUDA requested where there is none.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(
            f"device: expected 'cpu', 'cuda' or 'cuda:<n>', found {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device: {device!r} requested, but CUDA is not available here")
    return dev


def memory_format(dev: torch.device, net: Any = None) -> torch.memory_format:
    """``channels_last`` for convolutions on CPU (1.3-1.9x faster here) and CUDA.

    On CPU it is avoided for networks where oneDNN's ``channels_last`` weight gradient is
    broken (:func:`channels_last_safe`).
    """
    import torch

    if dev.type == "cuda" or (dev.type == "cpu" and (net is None or channels_last_safe(net))):
        return torch.channels_last
    return torch.contiguous_format


def channels_last_safe(net: Any) -> bool:
    """False when ``net`` has a strided 1x1 convolution with fewer than 16 input channels.

    oneDNN's weight-gradient kernel for such a convolution in ``channels_last`` writes past
    its buffer (``docs/notes/training.md``); the paper-size networks are not affected.
    """
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) \
                and tuple(m.stride) != (1, 1) and m.in_channels < ONEDNN_MIN_IC:
            return False
    return True


@contextlib.contextmanager
def deterministic(dev: torch.device) -> Iterator[None]:
    """Deterministic algorithms during training; the caller's settings restored after."""
    import torch

    was, was_warn = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deterministic.*")
            yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
        torch.backends.cudnn.benchmark = bench


@contextlib.contextmanager
def forked_rng(dev: torch.device) -> Iterator[None]:
    """Leave torch's, numpy's and Python's global random states as the caller had them."""
    import torch

    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def seed_all(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random generators."""
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    random.seed(seed)


def cpu_copy(state: Mapping[str, Any]) -> dict[str, Any]:
    """A detached, contiguous CPU copy of every tensor of a state dict."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def predict_batched(net: Any, x: torch.Tensor, dev: torch.device, fmt: Any) -> torch.Tensor:
    """``net(x)`` in eval mode without gradients, :data:`PREDICT_BATCH` patches at a time.

    Returns float32 on the CPU; ``(0, out_channels, H, W)`` for an empty ``x``.
    """
    import torch

    out = []
    net.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], PREDICT_BATCH):
            xb = x[start:start + PREDICT_BATCH].to(dev).contiguous(memory_format=fmt)
            out.append(net(xb).float().cpu().contiguous())
    if not out:
        return torch.zeros((0, net.config["out_channels"], *x.shape[-2:]))
    return torch.cat(out)
