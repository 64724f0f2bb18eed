"""Maps of survey datasets: km axes from the CRS, log colour scales, geology legends.

:func:`plot_map` (one variable), :func:`compare_maps` (methods side by side),
:func:`plot_history` and :func:`plot_block_roles` (training diagnostics). Matplotlib is
imported on first drawing; lazy (dask) data is computed only for the slice drawn.
"""

from __future__ import annotations

from geochem_sr.plotting.compare import compare_maps
from geochem_sr.plotting.diagnostics import plot_block_roles, plot_history
from geochem_sr.plotting.maps import plot_map
from geochem_sr.plotting.style import MAX_CELLS, NO_DATA_COLOR, ROLE_COLORS, TRUTH

__all__ = [
    "MAX_CELLS",
    "NO_DATA_COLOR",
    "ROLE_COLORS",
    "TRUTH",
    "plot_map",
    "compare_maps",
    "plot_history",
    "plot_block_roles",
]
