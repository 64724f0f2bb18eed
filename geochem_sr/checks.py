"""Checks of plain argument values, shared by the settings, the networks and model files.

Near the bottom layer: imports only :mod:`geochem_sr.errors` (and numpy), not torch.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from geochem_sr.errors import ParameterError

__all__ = ["is_number", "is_integer", "check_positive_int"]


def is_number(x: Any) -> bool:
    """True for a real number: Python or numpy integers and floats, not booleans.

    Examples
    --------
    >>> is_number(np.float32(0.5)), is_number(3), is_number(True), is_number("3")
    (True, True, False, False)
    """
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def is_integer(x: Any) -> bool:
    """True for a Python or numpy integer, not a boolean (nor a float such as ``3.0``).

    Examples
    --------
    >>> is_integer(np.int64(3)), is_integer(3.0), is_integer(False)
    (True, False, False)
    """
    return isinstance(x, numbers.Integral) and not isinstance(x, bool | np.bool_)


def check_positive_int(name: str, value: Any, alternative: str = "") -> int:
    """``value`` as an int when it is an integer >= 1 (:func:`is_integer`).

    Parameters
    ----------
    name : str
        The argument, as the message names it.
    value : object
        The value to check.
    alternative : str, optional
        What else is accepted, for the message (e.g. ``" or None"``).

    Returns
    -------
    int

    Raises
    ------
    ParameterError
        ``value`` is not an integer >= 1.

    Examples
    --------
    >>> check_positive_int("epochs", np.int64(5))
    5
    """
    if not is_integer(value) or value < 1:
        raise ParameterError(
            f"{name}: expected a positive integer{alternative}, found {value!r}")
    return int(value)
