"""The size multiple and receptive field of a registered network, read without weights
(:func:`network_geometry`): what tiling, halos and cross-validation blocks are sized by."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geochem_sr.models.registry import get_model, model_class

__all__ = ["DEFAULT_RECEPTIVE_FIELD", "network_geometry", "network_tile_reach"]

#: Receptive field (cells) assumed for a network that does not declare one.
DEFAULT_RECEPTIVE_FIELD = 64


def network_geometry(name: str, config: Mapping[str, Any]) -> tuple[int, int]:
    """Size multiple and receptive field of the network ``name`` built with ``config``.

    Parameters
    ----------
    name : str
        A registered network name (:func:`~geochem_sr.models.model_class`).
    config : mapping
        Its constructor arguments, ``in_channels`` and ``out_channels`` included (a
        model file's ``network_config``); used only when the class does not declare both
        values as plain class attributes.

    Returns
    -------
    (int, int)
        ``(size_multiple, receptive_field)``: input sizes must be multiples of the first
        (1 when undeclared); the second is in cells (:data:`DEFAULT_RECEPTIVE_FIELD` when
        undeclared).

    Raises
    ------
    ParameterError
        ``name`` is not registered, or ``config`` is not valid for it.

    Notes
    -----
    The class is imported (and torch with it) on the first call; the network is built
    only when a value depends on its configuration (a property).
    """
    src: Any = model_class(name)  # class attributes when they are plain
    sm = getattr(src, "size_multiple", 1)
    rf = getattr(src, "receptive_field", DEFAULT_RECEPTIVE_FIELD)
    if not (isinstance(sm, int) and isinstance(rf, int)):  # properties of the config
        src = get_model(name, **dict(config))
        sm = getattr(src, "size_multiple", 1)
        rf = getattr(src, "receptive_field", DEFAULT_RECEPTIVE_FIELD)
    return int(sm or 1), int(rf)


def network_tile_reach(name: str, config: Mapping[str, Any]) -> int:
    """Cells of input a tile on the network's size-multiple lattice needs on each side.

    The network's ``tile_reach`` (:class:`~geochem_sr.models.layers.SRNetwork`): half the
    receptive field, or less where the network declares it (the multi-level U-Net: 64
    cells where half its receptive field is 78). Read as :func:`network_geometry` reads
    its values: the class attribute when it is a plain int, else from the built network.

    Examples
    --------
    >>> network_tile_reach("multilevel_unet", {"in_channels": 5, "out_channels": 2})
    64
    >>> network_tile_reach("srcnn", {"in_channels": 5, "out_channels": 2})
    6
    """
    from geochem_sr.models.layers import SRNetwork  # loaded with the class

    cls = model_class(name)
    tr = getattr(cls, "tile_reach", None)
    if isinstance(tr, int):
        return tr
    if tr is None or tr is SRNetwork.tile_reach:  # the default: no network to build
        return max(0, (network_geometry(name, config)[1] - 1) // 2)
    return int(get_model(name, **dict(config)).tile_reach)  # of the config (ensemble, ...)
