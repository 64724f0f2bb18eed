"""The survey-dataset convention: every name shared between modules, and ``validate``.

A *survey dataset* is an :class:`xarray.Dataset` on one regular, projected grid:

==================== ================ ======= ==============================================
name                 dims             dtype   meaning
==================== ================ ======= ==============================================
``x``, ``y``         coords           float64 cell centres in metres, ``y`` descending
``spatial_ref``      coord            int     CRS + GeoTransform (``rioxarray``)
``element``          coord            str     element symbols, e.g. ``As Sb Bi ...``
``element_units``    coord (element)  str     ``ppm`` / ``ppb`` per element
``lr``               element, y, x    float32 sparse-survey (1:50,000) map, NaN off coverage
``hr``               element, y, x    float32 dense-survey (1:25,000) map, NaN elsewhere
``elevation``        y, x             float32 metres
``slope``            y, x             float32 degrees
``aspect``           y, x             float32 degrees clockwise from north, NaN on flats
``lithology``        y, x             int16   unit codes (CF flag_values/flag_meanings), -1
``geology_embedding`` embedding, y, x float32 word vector of the unit at each cell
``lr_sites``         y, x             int16   number of sparse-survey samples in each cell
``fault_distance``   y, x             float32 metres to the nearest mapped fault
``contact_distance`` y, x             float32 metres to the nearest lithological contact
``lr_view``          covariate, y, x  float32 each covariate channel as the sparse survey
                                              sees it: interpolated from the ``lr_sites``
``hr_pred``          element, y, x    float32 super-resolved map (original units)
``hr_pred_std``      element, y, x    float32 its uncertainty (log10 units)
``residual_pred``    element, y, x    float32 predicted ``log10(hr) - log10(lr)``
==================== ================ ======= ==============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr

from geochem_sr.errors import CRSError, DataError, GridError, SchemaError

# --- dimension and coordinate names -------------------------------------------------
X = "x"
Y = "y"
ELEMENT = "element"
EMBEDDING = "embedding"
SPATIAL_REF = "spatial_ref"
COVARIATE = "covariate"
ELEMENT_UNITS = "element_units"

# --- variable names -----------------------------------------------------------------
LR = "lr"
HR = "hr"
LR_COVERAGE = "lr_coverage"
HR_COVERAGE = "hr_coverage"
LR_VARIANCE = "lr_variance"
ELEVATION = "elevation"
SLOPE = "slope"
ASPECT = "aspect"
LITHOLOGY = "lithology"
GEOLOGY_EMBEDDING = "geology_embedding"
HR_PRED = "hr_pred"
HR_PRED_STD = "hr_pred_std"
RESIDUAL_PRED = "residual_pred"
LR_SITES = "lr_sites"
FAULT_DISTANCE = "fault_distance"
CONTACT_DISTANCE = "contact_distance"
LR_VIEW = "lr_view"
AOA = "aoa"  # area-of-applicability flag
DISSIMILARITY = "dissimilarity"

CONCENTRATION_VARS = (LR, HR, HR_PRED)
TERRAIN_VARS = (ELEVATION, SLOPE, ASPECT)
#: Dimensions of the geology word vectors (the paper's Table 4 has 5).
EMBEDDING_SIZE = 5

# --- attribute names ----------------------------------------------------------------
ATTR_GEOLOGY_VOCAB = "geology_vocabulary"  # JSON: {"units": [...], "vectors": [[...]]}
ATTR_CENSORING = "censoring_policy"
ATTR_INCOMPLETE = "geochem_sr_incomplete"
#: Metres from a cell of the dense map to the farthest dense sample its interpolation uses
#: (largest over covered cells): how far a held-out block's samples reach into training.
ATTR_HR_REACH = "hr_neighbourhood_reach_m"

# --- the paper's elements and their units (Pei et al. 2025, Table 3) ----------------
DEFAULT_ELEMENTS: tuple[str, ...] = ("As", "Sb", "Bi", "Au", "Ag", "Cu", "Pb", "Zn", "Sn", "Mo")
DEFAULT_UNITS: dict[str, str] = {el: "ppm" for el in DEFAULT_ELEMENTS} | {"Au": "ppb", "Ag": "ppb"}

#: Chemical symbols accepted as element names (any element, not only the ten).
KNOWN_ELEMENTS: frozenset[str] = frozenset(
    """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge
    As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm
    Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U
    Np Pu""".split()
)
KNOWN_UNITS = frozenset({"ppm", "ppb", "pct", "%", "mg/kg", "ug/kg", "g/t"})

#: Named input sets of the paper's experiment (Table 6).
INPUT_SETS: dict[str, tuple[str, ...]] = {
    "geochem": ("geochem",),
    "geochem+terrain": ("geochem", "terrain"),
    "geochem+terrain+geology": ("geochem", "terrain", "geology"),
}
#: Every channel group, in channel order: the paper's three, then the structural distances
#: (``faults``, ``contacts``) and ``unseen`` (each covariate minus what the sparse sites see
#: of it, :mod:`geochem_sr.features.sparse_view`).
INPUT_GROUPS: tuple[str, ...] = ("geochem", "terrain", "geology", "faults", "contacts", "unseen")
#: The richest input set: what :func:`geochem_sr.training.train` uses by default.
FULL_INPUTS = "+".join(INPUT_GROUPS)


def default_chunks() -> dict[str, int]:
    """Chunking of a survey dataset on disk: ``element`` whole, tiles of 512 cells."""
    return {ELEMENT: -1, EMBEDDING: -1, Y: 512, X: 512}


def parse_input_set(inputs: str | Sequence[str]) -> tuple[str, ...]:
    """Return the channel groups of an input set.

    Parameters
    ----------
    inputs : str or sequence of str
        ``"geochem"``, ``"geochem+terrain"``, ``"geochem+terrain+geology"`` or any
        ``+``-joined combination of :data:`INPUT_GROUPS` that includes ``geochem``
        (``unseen`` also needs a covariate group: ``terrain``, ``geology``, ``faults`` or
        ``contacts``).

    Returns
    -------
    tuple of str
        The groups in canonical order.

    Examples
    --------
    >>> parse_input_set("geology+geochem")
    ('geochem', 'geology')
    """
    parts = inputs.split("+") if isinstance(inputs, str) else list(inputs)
    valid = INPUT_GROUPS
    bad = [p for p in parts if p not in valid]
    if bad or "geochem" not in parts:
        raise SchemaError(
            f"inputs: expected '+'-joined groups from {valid} including 'geochem', found {inputs!r}"
        )
    if "unseen" in parts and not set(parts) - {"geochem", "unseen"}:
        raise SchemaError(
            f"inputs: 'unseen' needs a covariate group (terrain, geology, faults or contacts) "
            f"to act on, found {inputs!r}"
        )
    return tuple(g for g in valid if g in parts)


# --- validation -----------------------------------------------------------------------
def _grid_spacing(coord: np.ndarray, name: str) -> float:
    if coord.size < 2:
        raise GridError(f"coordinate '{name}': expected at least 2 cells, found {coord.size}")
    d = np.diff(coord)
    step = float(d[0])
    if step == 0 or not np.allclose(d, step, rtol=1e-6, atol=1e-6 * abs(step)):
        raise GridError(
            f"coordinate '{name}': expected a regular spacing, found steps from "
            f"{d.min():g} to {d.max():g}"
        )
    return step


def check_crs(obj: xr.Dataset | xr.DataArray, name: str = "dataset") -> None:
    """Raise :class:`CRSError` if ``obj`` has no CRS or a geographic one."""
    crs = obj.rio.crs
    if crs is None:
        raise CRSError(
            f"{name}: expected a projected CRS (e.g. ds.rio.write_crs('EPSG:32650')), found none"
        )
    if crs.is_geographic:
        raise CRSError(
            f"{name}: expected a projected CRS in metres, found geographic {crs.to_string()} "
            "(degrees); reproject it first, e.g. with ds.rio.reproject('EPSG:32650')"
        )


def check_grid(obj: xr.Dataset | xr.DataArray, name: str = "dataset") -> tuple[float, float]:
    """Check that ``obj`` lies on a regular grid; return (dx, dy) with dy < 0 expected."""
    for dim in (X, Y):
        if dim not in obj.coords:
            raise SchemaError(f"{name}: expected a coordinate '{dim}', found {list(obj.coords)}")
    dx = _grid_spacing(np.asarray(obj[X].values, dtype=float), X)
    dy = _grid_spacing(np.asarray(obj[Y].values, dtype=float), Y)
    if dx <= 0:
        raise GridError(f"coordinate 'x': expected increasing values, found step {dx:g}")
    return dx, dy


def _check_dims(ds: xr.Dataset, var: str, expected: tuple[str, ...]) -> None:
    found = ds[var].dims
    if found != expected:
        raise SchemaError(f"variable '{var}': expected dims {expected}, found {found}")


def _check_concentration(ds: xr.Dataset, var: str, check_values: bool) -> None:
    da = ds[var]
    if not np.issubdtype(da.dtype, np.floating):
        raise SchemaError(
            f"variable '{var}': expected floating-point concentrations, found {da.dtype}"
        )
    if not check_values:
        return
    for el in da[ELEMENT].values:
        vals = da.sel({ELEMENT: el}).values
        if np.isinf(vals).any():
            raise DataError(
                f"variable '{var}', element {el}: expected finite concentrations, found "
                f"{int(np.isinf(vals).sum())} infinite cells (a value too large for float32?)"
            )
        finite = vals[np.isfinite(vals)]
        if finite.size == 0:
            raise DataError(f"variable '{var}', element {el}: every value is NaN")
        if (finite <= 0).any():
            raise DataError(
                f"variable '{var}', element {el}: expected positive concentrations, "
                f"found {int((finite <= 0).sum())} cells <= 0 (min {finite.min():g})"
            )


def validate(
    ds: xr.Dataset,
    require: Iterable[str] = (LR,),
    check_values: bool = True,
) -> xr.Dataset:
    """Check that ``ds`` follows the survey-dataset convention.

    Parameters
    ----------
    ds : xarray.Dataset
        The survey dataset.
    require : iterable of str, default ``("lr",)``
        Variables that must be present.
    check_values : bool, default True
        Also load concentration arrays and check that they are positive and not all NaN
        (computes dask arrays; pass False for a cheap structural check).

    Returns
    -------
    xarray.Dataset
        ``ds`` itself, so that ``validate`` can be chained.

    Raises
    ------
    GeoSRError
        A subclass naming the first problem found.

    Examples
    --------
    >>> import geochem_sr as gs
    >>> import xarray as xr
    >>> gs.validate(xr.Dataset())
    Traceback (most recent call last):
    ...
    geochem_sr.errors.SchemaError: dataset: expected a coordinate 'x', found []
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"expected an xarray.Dataset, found {type(ds).__name__}")
    dx, dy = check_grid(ds)
    if dy > 0:
        raise GridError(
            f"coordinate 'y': expected descending values (row 0 is north), found step {dy:g}; "
            "flip it with ds.isel(y=slice(None, None, -1))"
        )
    if not np.isclose(abs(dy), dx, rtol=1e-6):
        raise GridError(
            f"coordinates 'x', 'y': expected square cells, found {dx:g} x {abs(dy):g}; "
            "regrid onto square cells (geochem_sr.schema.make_grid)"
        )
    check_crs(ds)
    for var in require:
        if var not in ds.data_vars:
            raise SchemaError(
                f"variable '{var}': required but missing (found {sorted(ds.data_vars)})"
            )
    if ELEMENT in ds.coords:
        unknown = [str(e) for e in ds[ELEMENT].values if str(e) not in KNOWN_ELEMENTS]
        if unknown:
            raise SchemaError(
                f"coordinate 'element': expected chemical symbols, found unknown {unknown}"
            )
    for var in (LR, HR, HR_PRED):
        if var in ds.data_vars:
            _check_dims(ds, var, (ELEMENT, Y, X))
            _check_concentration(ds, var, check_values)
    for var in (*TERRAIN_VARS, LITHOLOGY, LR_SITES, FAULT_DISTANCE, CONTACT_DISTANCE):
        if var in ds.data_vars:
            _check_dims(ds, var, (Y, X))
    if LITHOLOGY in ds.data_vars and not np.issubdtype(ds[LITHOLOGY].dtype, np.integer):
        raise SchemaError(
            f"variable 'lithology': expected integer unit codes, found {ds[LITHOLOGY].dtype}"
        )
    if GEOLOGY_EMBEDDING in ds.data_vars:
        _check_dims(ds, GEOLOGY_EMBEDDING, (EMBEDDING, Y, X))
    if LR_VIEW in ds.data_vars:
        _check_dims(ds, LR_VIEW, (COVARIATE, Y, X))
    return ds


def check_same_grid(a: xr.DataArray | xr.Dataset, b: xr.DataArray | xr.Dataset, what: str) -> None:
    """Raise :class:`GridError` unless ``a`` and ``b`` share x/y coordinates exactly."""
    for dim in (X, Y):
        ca, cb = np.asarray(a[dim].values), np.asarray(b[dim].values)
        if ca.shape != cb.shape or not np.allclose(ca, cb, rtol=0, atol=1e-6):
            raise GridError(
                f"{what}: expected the same '{dim}' coordinates, found {ca.size} cells "
                f"[{ca.min():.1f}..{ca.max():.1f}] vs {cb.size} cells "
                f"[{cb.min():.1f}..{cb.max():.1f}]"
            )


def make_grid(
    bounds: tuple[float, float, float, float],
    cell_size: float,
    crs: object,
) -> xr.Dataset:
    """An empty survey dataset holding only the grid: x ascending, y descending, CRS set.

    Parameters
    ----------
    bounds : (xmin, ymin, xmax, ymax)
        Outer edges of the grid in CRS units (metres); snapped outward to ``cell_size``.
    cell_size : float
        Cell size in metres.
    crs : anything pyproj accepts
        The projected CRS.

    Returns
    -------
    xarray.Dataset
        With coords ``x``, ``y`` (cell centres) and ``spatial_ref``.
    """
    import rioxarray  # noqa: F401  (registers .rio)

    xmin, ymin, xmax, ymax = (float(b) for b in bounds)
    if not (xmax > xmin and ymax > ymin):
        raise GridError(f"bounds: expected xmin < xmax and ymin < ymax, found {bounds}")
    if cell_size <= 0:
        raise GridError(f"cell_size: expected a positive number of metres, found {cell_size}")
    x0 = np.floor(xmin / cell_size) * cell_size
    y1 = np.ceil(ymax / cell_size) * cell_size
    nx = int(np.ceil((xmax - x0) / cell_size))
    ny = int(np.ceil((y1 - ymin) / cell_size))
    x = x0 + cell_size * (np.arange(nx) + 0.5)
    y = y1 - cell_size * (np.arange(ny) + 0.5)
    ds = xr.Dataset(coords={Y: (Y, y), X: (X, x)})
    ds[X].attrs = {"units": "m", "standard_name": "projection_x_coordinate", "axis": "X"}
    ds[Y].attrs = {"units": "m", "standard_name": "projection_y_coordinate", "axis": "Y"}
    ds = ds.rio.write_crs(crs)
    check_crs(ds, "grid")
    return ds.rio.write_transform(ds.rio.transform(recalc=True))


def units_of(ds: xr.Dataset) -> dict[str, str]:
    """Per-element units of a survey dataset (``element_units`` coord), element -> unit."""
    if ELEMENT_UNITS in ds.coords:
        return {
            str(e): str(u)
            for e, u in zip(ds[ELEMENT].values, ds[ELEMENT_UNITS].values, strict=True)
        }
    return {str(e): DEFAULT_UNITS.get(str(e), "ppm") for e in ds[ELEMENT].values}
