"""Package names imported on first use (PEP 562): one ``__getattr__`` for every package.

A package whose modules need heavy imports (torch, ...) lists their names per module;
:func:`lazy_exports` gives it the name -> module table and its ``__getattr__`` and
``__dir__``, so that importing the package imports none of those modules.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], submodules: Iterable[str] = ()
) -> tuple[dict[str, str], Callable[[str], Any], Callable[[], list[str]]]:
    """The lazy names of ``package``: their table, the package's ``__getattr__`` and ``__dir__``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of str to str
        Module (relative to ``package``) -> the names it gives, separated by spaces.
    submodules : iterable of str, optional
        Submodules that ``package.<name>`` imports on first use.

    Returns
    -------
    (table, __getattr__, __dir__)
        ``table`` maps every name to the full name of its module.

    Examples
    --------
    >>> table, getattr_, dir_ = lazy_exports("geochem_sr.training", {"api": "train"})
    >>> table
    {'train': 'geochem_sr.training.api'}
    """
    table = {name: f"{package}.{module}"
             for module, listed in names.items() for name in listed.split()}
    lazy_modules = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        if name in lazy_modules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table) | lazy_modules)

    return table, __getattr__, __dir__
