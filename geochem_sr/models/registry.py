"""Networks by name: ``get_model(name, in_channels, out_channels, **kwargs)``.

Each network stores its constructor arguments in ``model.config`` (JSON-serialisable), so a
model file rebuilds it with ``get_model(model.model_name, **model.config)``. Every network
also has ``receptive_field`` (cells), ``tile_reach`` (cells of input a tile on its lattice
needs on each side: the halo; at most half the receptive field) and ``size_multiple`` (input
height and width must be multiples of it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from geochem_sr.errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["get_model", "available_models", "available_methods", "model_class",
           "NETWORK_CLASSES", "CELL_MODELS"]

#: Registered name -> class name; the class is defined in ``geochem_sr.models.<name>``,
#: imported on first use.
NETWORK_CLASSES: dict[str, str] = {
    "multilevel_unet": "MultiLevelUNet",
    "srcnn": "SRCNN",
    "vdsr": "VDSR",
    "unet": "UNet",
    "trees": "CellTrees",  # per cell: LightGBM on multi-scale features
    "ridge": "CellRidge",  # per cell: ridge regression on the same features
    "ensemble": "Ensemble",  # of any of the above
    "selection": "Selection",  # per element, one of several
}
#: Registered names that combine other networks (not listed by available_models).
_COMPOSITE = ("ensemble", "selection")
#: Registered names fitted cell by cell in closed form or by boosting, not by gradient
#: descent on patches (:func:`geochem_sr.training.train` fits them its own way).
CELL_MODELS: tuple[str, ...] = ("trees", "ridge")


def available_models() -> list[str]:
    """Names of the networks trained by gradient descent (the paper's four).

    Returns
    -------
    list of str
        ``["multilevel_unet", "srcnn", "vdsr", "unet"]``. The per-cell regressors are
        :func:`available_methods`.
    """
    return [n for n in NETWORK_CLASSES if n not in _COMPOSITE and n not in CELL_MODELS]


def available_methods() -> list[str]:
    """Every kind :func:`geochem_sr.training.train` fits: the networks and the per-cell
    regressors (``"trees"``, ``"ridge"``)."""
    return available_models() + list(CELL_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The network class registered under ``name``.

    Raises
    ------
    ParameterError
        If ``name`` is not registered; the message lists the valid names.
    """
    if not isinstance(name, str) or name not in NETWORK_CLASSES:  # "ensemble" included
        raise ParameterError(
            f"model: expected one of {', '.join(available_methods())}, found {name!r}"
        )
    return getattr(importlib.import_module(f"geochem_sr.models.{name}"), NETWORK_CLASSES[name])


def get_model(name: str, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    name : str
        One of :func:`available_models`.
    in_channels : int
        Number of input channels (18 in the paper).
    out_channels : int
        Number of output channels, one residual map per element (10 in the paper).
    **kwargs
        Network-specific arguments, e.g. ``base_channels``, ``depth``, ``features``,
        ``activation`` (``"smooth_relu"``, ``"relu"``, ``"leaky_relu"``, ``"gelu"``).

    Returns
    -------
    torch.nn.Module
        Maps ``(N, in_channels, H, W)`` to the residual ``(N, out_channels, H, W)``.

    Raises
    ------
    ParameterError
        On an unknown name, activation, or argument, or a non-positive channel count.

    Examples
    --------
    >>> net = get_model("vdsr", in_channels=18, out_channels=10, depth=8)
    >>> rebuilt = get_model("vdsr", **net.config)
    """
    cls = model_class(name)
    try:
        return cls(in_channels, out_channels, **kwargs)
    except TypeError as err:  # unexpected keyword
        raise ParameterError(f"model {name!r}: invalid arguments {sorted(kwargs)}: {err}") from err
