"""A realistic synthetic survey area: the embedded default for demo, notebook, tests, benchmarks.

:func:`synthetic_region` returns the *raw* inputs a user has (a DEM, a geological map, faults
and two stream-sediment surveys as point tables with censored lab values) plus the noise-free
``truth`` on the survey grid. The area is modelled on the East Kunlun setting of Pei et al.
(2025): the paper's lithological units (Table 2) and element levels (Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import xarray as xr
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.errors import GridError, SchemaError

__all__ = ["SyntheticRegion", "synthetic_region"]

DEFAULT_ELEMENTS = schema.DEFAULT_ELEMENTS
_EL = schema.DEFAULT_ELEMENTS  # order of every per-element table below

# --- the elements: regional median (Table 3; ppm, Au/Ag ppb), detection limit, lab RSD --------
_MEDIAN = dict(zip(_EL, (6.5, 0.42, 0.2, 1.3, 50.0, 17.0, 17.0, 50.0, 2.0, 0.95), strict=True))
_DETECTION = dict(zip(_EL, (0.5, 0.05, 0.08, 0.5, 20.0, 2.0, 3.0, 5.0, 0.5, 0.4), strict=True))
_RSD = dict(zip(_EL, (0.06, 0.08, 0.08, 0.10, 0.08, 0.05, 0.05, 0.05, 0.07, 0.08), strict=True))
# loadings on three latent suites (orogenic Au-As-Sb, base metal, granitophile) -> correlations
_LOADINGS = np.array([(0.7, 0, 0), (0.7, 0, 0), (0.2, 0, 0.6), (0.5, 0, 0), (0.3, 0.5, 0),
                      (0, 0.7, 0), (0, 0.5, 0.3), (0, 0.7, 0), (0, 0, 0.7), (0, 0, 0.6)])
# terrain effect, log10 per standard deviation of (elevation, topographic position, slope)
_TERRAIN = np.array([(0.04, -0.08, -0.04), (0.04, -0.07, -0.04), (-0.03, -0.07, -0.03),
                     (-0.04, -0.12, -0.05), (0.03, -0.05, -0.03), (-0.04, -0.08, -0.04),
                     (0.00, -0.07, -0.04), (-0.04, -0.08, -0.04), (0.03, -0.08, -0.03),
                     (0.00, -0.05, -0.04)])
# peak log10 enrichment of fault-hosted (orogenic Au) and contact (skarn / greisen) anomalies
_FAULT_AMP = np.array((1.2, 1.0, 0.2, 1.5, 0.7, 0.15, 0.3, 0.1, 0.0, 0.0))
_SKARN_AMP = np.array((0.15, 0.0, 0.7, 0.15, 0.6, 1.2, 0.8, 0.9, 0.3, 0.7))
_GREISEN_AMP = np.array((0.15, 0.0, 1.1, 0.0, 0.3, 0.4, 0.6, 0.4, 1.2, 1.0))

# --- the units (Table 2): name, age, rock class, log10 offset from the median per element --
_UNITS: tuple[tuple[str, str, str, tuple[float, ...]], ...] = (
    ("Cenozoic sediments", "Cenozoic", "sediment",
     (-0.08, -0.08, -0.15, 0.08, -0.08, -0.15, -0.08, -0.15, -0.08, -0.15)),
    ("Triassic Elashan Formation", "Triassic", "volcanic",
     (0.15, 0.15, 0.00, 0.00, 0.15, -0.08, 0.22, 0.08, 0.08, 0.15)),
    ("Triassic Hongshuichuan Formation", "Triassic", "sedimentary",
     (0.38, 0.30, -0.08, 0.15, 0.00, -0.08, 0.00, 0.00, 0.00, -0.08)),
    ("Carboniferous Haotelowa Formation", "Carboniferous", "sedimentary",
     (0.22, 0.15, 0.00, 0.08, 0.08, 0.00, 0.15, 0.22, -0.08, 0.08)),
    ("Carboniferous Halagole Formation", "Carboniferous", "sedimentary",
     (-0.15, 0.08, -0.15, -0.08, 0.00, -0.30, -0.08, -0.08, -0.30, -0.15)),
    ("Xiaomiao Formation in Changcheng System", "Mesoproterozoic", "metamorphic",
     (0.08, 0.00, 0.08, 0.15, 0.08, 0.15, 0.08, 0.15, 0.08, 0.00)),
    ("Paleoproterozoic Jinshuikou Group", "Paleoproterozoic", "metamorphic",
     (-0.08, -0.08, 0.08, 0.15, 0.00, 0.30, 0.00, 0.15, 0.00, 0.00)),
    ("Triassic granite", "Triassic", "intrusive",
     (-0.45, -0.30, 0.30, -0.30, 0.08, -0.45, 0.22, -0.22, 0.38, 0.30)),
    ("Triassic granodiorite", "Triassic", "intrusive",
     (-0.30, -0.22, 0.08, -0.15, 0.00, 0.00, 0.08, 0.00, 0.08, 0.15)),
    ("Permian quartz diorite", "Permian", "intrusive",
     (-0.22, -0.15, -0.08, 0.00, 0.00, 0.22, -0.08, 0.08, -0.15, 0.00)),
    ("Carboniferous granodiorite", "Carboniferous", "intrusive",
     (-0.30, -0.22, 0.00, -0.08, -0.08, 0.08, 0.00, 0.00, 0.00, 0.08)),
    ("Silurian granodiorite", "Silurian", "intrusive",
     (-0.30, -0.15, 0.00, -0.08, -0.08, 0.00, 0.00, 0.00, 0.00, 0.00)),
    ("Ordovician tonalite", "Ordovician", "intrusive",
     (-0.38, -0.22, -0.08, 0.00, -0.08, 0.15, -0.15, 0.08, -0.22, -0.08)),
)
# formations oldest -> youngest with their share of the folded pile (codes into _UNITS)
_FORMATIONS = ((6, 0.34), (5, 0.14), (4, 0.12), (3, 0.08), (2, 0.14), (1, 0.18))
# intrusions oldest -> youngest (younger cut older): code, area fraction, blob range (m)
_INTRUSIONS = ((12, 0.07, 2500.0), (11, 0.02, 1200.0), (10, 0.05, 2000.0), (9, 0.015, 900.0),
               (8, 0.16, 3500.0), (7, 0.07, 2000.0))
_RANDOM = (("random_3km", 3000.0, 0.15), ("random_800m", 800.0, 0.07),
           ("random_200m", 200.0, 0.07))  # name, range (m), log10 sd
_CARBONATE_HOSTS = (3, 4, 5)  # formations with limestone / marble: best skarn hosts
_STREAMS = {"dem": 1, "faults": 2, "geology": 3, "fields": 4, "sparse": 5, "dense": 6}


@dataclass(frozen=True, eq=False)
class SyntheticRegion:
    """Raw inputs of a synthetic survey area and its noise-free truth.

    See :func:`synthetic_region` for the model and the meaning of each field.
    """

    dem: xr.DataArray
    geology: gpd.GeoDataFrame
    faults: gpd.GeoDataFrame
    samples_sparse: gpd.GeoDataFrame
    samples_dense: gpd.GeoDataFrame
    truth: xr.DataArray
    bounds: tuple[float, float, float, float]
    crs: str
    cell_size: float
    elements: tuple[str, ...]
    units: dict[str, str]
    detection_limits: dict[str, float]
    seed: int


@dataclass(frozen=True)
class _Grid:
    """The fine internal model grid (cell centres, y descending)."""

    x: np.ndarray
    y: np.ndarray
    res: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.size, self.x.size

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return np.meshgrid(self.x, self.y)

    def sample(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear values of ``field`` (..., ny, nx) at points (x, y)."""
        rows, cols = (self.y[0] - y) / self.res, (x - self.x[0]) / self.res
        flat = field.reshape(-1, *self.shape)
        out = [ndimage.map_coordinates(f, [rows, cols], order=1, mode="nearest") for f in flat]
        return np.stack(out).reshape(*field.shape[:-2], np.size(x))


def _rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[part]]))


def _zscore(a: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    return (a - a.mean(axis=axis, keepdims=True)) / a.std(axis=axis, keepdims=True)


def _spectral(rng: np.random.Generator, n: int, grid: _Grid, pad_m: float, amp) -> np.ndarray:
    """``n`` unit-variance random fields: white noise filtered by ``amp(k²)`` via FFT."""
    from scipy import fft

    pad = int(min(max(grid.shape), np.ceil(pad_m / grid.res)))  # keeps wrap-around out
    ny, nx = fft.next_fast_len(grid.shape[0] + pad), fft.next_fast_len(grid.shape[1] + pad, True)
    k2 = np.fft.fftfreq(ny, grid.res)[:, None] ** 2 + np.fft.rfftfreq(nx, grid.res)[None, :] ** 2
    spec = fft.rfft2(rng.standard_normal((n, ny, nx))) * amp(k2)
    return _zscore(fft.irfft2(spec, s=(ny, nx))[:, : grid.shape[0], : grid.shape[1]], (1, 2))


def _grf(rng: np.random.Generator, n: int, grid: _Grid, range_m: float,
         nu: float = 1.0) -> np.ndarray:
    """``n`` Gaussian random fields with a Matérn spectrum of practical range ``range_m``."""
    scale = (2 * np.pi * range_m / 4.0) ** 2
    return _spectral(rng, n, grid, range_m, lambda k2: (1.0 + scale * k2) ** (-(nu + 1) / 2))


def _smooth1d(rng: np.random.Generator, n: int, sigma_cells: float) -> np.ndarray:
    return _zscore(ndimage.gaussian_filter1d(rng.standard_normal(n), sigma_cells))


def _fault_model(rng: np.random.Generator, grid: _Grid, bounds: tuple[float, ...]) -> tuple:
    """Faults: gently curved traces, signed distance to each, and their ore-shoot profiles."""
    from shapely.geometry import LineString, box

    xmin, ymin, xmax, ymax = bounds
    w, h = xmax - xmin, ymax - ymin
    n_faults = max(3, round(5 * np.sqrt(w * h / 12800.0**2)))
    half = np.hypot(w, h)
    t1 = np.arange(-half, half + grid.res, grid.res)
    xx, yy = grid.mesh()
    lines, dists = [], []
    anomaly = np.zeros((len(_EL), *grid.shape))
    for j in range(n_faults):  # main WNW set, then the conjugate NE set
        theta = np.deg2rad(rng.normal(-15, 10) if j < 0.6 * n_faults else rng.normal(40, 12))
        cx, cy = xmin + w * rng.uniform(0.15, 0.85), ymin + h * rng.uniform(0.15, 0.85)
        lam, a, phi = rng.uniform(2500, 8000, 3), rng.uniform(40, 200, 3), rng.uniform(0, 6.3, 3)
        arg = 2 * np.pi * t1[:, None] / lam + phi
        f1, df1 = (a * np.sin(arg)).sum(1), (a * 2 * np.pi / lam * np.cos(arg)).sum(1)
        c, s = np.cos(theta), np.sin(theta)
        t, n = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        dists.append((n - np.interp(t, t1, f1)) / np.sqrt(1 + np.interp(t, t1, df1) ** 2))
        trace = LineString(np.c_[cx + t1 * c - f1 * s, cy + t1 * s + f1 * c])
        part = trace.intersection(box(*bounds))
        if part.geom_type == "MultiLineString":
            part = max(part.geoms, key=lambda g: g.length)
        lines.append(part)
        # ore shoots: amplitude 0..~1 with barren gaps, width 100-200 m along strike
        amp = np.clip(_smooth1d(rng, t1.size, 600 / grid.res) + 0.3, 0, None) / 1.5
        width = 150 + 50 * np.tanh(_smooth1d(rng, t1.size, 1000 / grid.res))
        strength = rng.uniform(0.6, 1.2) * np.exp(rng.normal(0, 0.3, len(_EL))) * _FAULT_AMP
        shoot = np.interp(t, t1, amp) * np.exp(-0.5 * (dists[-1] / np.interp(t, t1, width)) ** 2)
        anomaly += strength[:, None, None] * shoot
    return lines, np.stack(dists), anomaly


def _raw_dem(rng: np.random.Generator, grid: _Grid, fault_dist: np.ndarray) -> np.ndarray:
    """Fractal relief in [0, 1]: fBm + ridged octaves + V-shaped valleys, fault zones eroded."""
    h = 0.5 * _spectral(rng, 1, grid, 3000.0, lambda k2: (k2 + 1e-8) ** -1.0)[0]  # P ~ k^-4
    for range_m, w in ((6000.0, 0.6), (3000.0, 0.45), (1500.0, 0.25), (700.0, 0.1)):
        ridge, valley = _grf(rng, 1, grid, range_m, nu=2.0)[0], _grf(rng, 1, grid, 0.8 * range_m,
                                                                      nu=2.0)[0]
        h += w * (1 - np.clip(np.abs(ridge), 0, 2) / 2) ** 2
        h -= 0.6 * w * (1 - np.clip(np.abs(valley), 0, 1)) ** 4
    h = (h - h.min()) / np.ptp(h)
    depth = rng.uniform(0.02, 0.05, len(fault_dist))[:, None, None]
    return h - (depth * np.exp(-0.5 * (fault_dist / 120.0) ** 2)).sum(0)


def _terrain(h: np.ndarray, res: float) -> np.ndarray:
    """Standardised (elevation, topographic position index at ~300 m, slope)."""
    gy, gx = np.gradient(h, res)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    tpi = h - ndimage.gaussian_filter(h, 300.0 / res, truncate=3.0)
    return np.stack([_zscore(h), _zscore(tpi), _zscore(slope)])


def _geology_raster(rng: np.random.Generator, grid: _Grid, fault_dist: np.ndarray,
                    h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bedrock and mapped unit codes: folded formations, intrusions, Cenozoic valley fill."""
    xx, yy = grid.mesh()
    theta = np.deg2rad(rng.normal(-20, 10))  # regional strike, WNW like East Kunlun
    u = -(xx - xx.mean()) * np.sin(theta) + (yy - yy.mean()) * np.cos(theta)
    v = (xx - xx.mean()) * np.cos(theta) + (yy - yy.mean()) * np.sin(theta)
    lam = rng.uniform(2000, 3500)
    fold_amp = lam / (2 * np.pi) * (1.2 + 0.6 * np.sin(2 * np.pi * v / rng.uniform(6e3, 12e3)))
    s = u + fold_amp * np.sin(2 * np.pi * u / lam + rng.uniform(0, 6.3))
    s += 300 * _grf(rng, 1, grid, 3000.0, nu=2.0)[0]
    s += (rng.normal(0, 250, len(fault_dist))[:, None, None] * (fault_dist > 0)).sum(0)
    shares = np.cumsum([f for _, f in _FORMATIONS])[:-1]
    codes = np.array([c for c, _ in _FORMATIONS])
    bedrock = codes[np.digitize(s, np.quantile(s, shares))]
    for code, frac, range_m in _INTRUSIONS:
        blob = _grf(rng, 1, grid, range_m, nu=3.0)[0]
        bedrock = np.where(blob > np.quantile(blob, 1 - frac), code, bedrock)
    # Cenozoic sediments on valley floors: low, concave, gentle ground
    elev, tpi, slope = _terrain(h, grid.res)
    score = -1.2 * elev - 0.6 * tpi - 0.5 * slope
    valley = ndimage.binary_opening(score > np.quantile(score, 0.9), iterations=2)
    lab, n = ndimage.label(valley)
    big = np.bincount(lab.ravel(), minlength=n + 1) >= 30
    big[0] = False
    return bedrock, np.where(big[lab], 0, bedrock)


def _polygonize(units: np.ndarray, grid: _Grid, bounds: tuple, crs: str) -> gpd.GeoDataFrame:
    """Unit raster -> valid polygons that tile ``bounds`` without gaps."""
    import rasterio.features
    from affine import Affine
    from shapely.geometry import box, shape
    from shapely.validation import make_valid

    transform = Affine(grid.res, 0, grid.x[0] - grid.res / 2, 0, -grid.res,
                       grid.y[0] + grid.res / 2)
    shapes = rasterio.features.shapes(units.astype(np.int16), transform=transform)
    geoms, codes = zip(*((make_valid(shape(g)), int(v)) for g, v in shapes), strict=True)
    gdf = gpd.GeoDataFrame({"code": codes}, geometry=list(geoms), crs=crs)
    gdf = gpd.clip(gdf, box(*bounds)).explode(index_parts=False)
    gdf = gdf[gdf.geom_type == "Polygon"].sort_values("code", kind="stable")
    gdf = gdf.reset_index(drop=True)
    table = [_UNITS[c] for c in gdf["code"]]
    return gpd.GeoDataFrame({"unit": [t[0] for t in table], "age": [t[1] for t in table],
                             "rock_class": [t[2] for t in table]}, geometry=gdf.geometry.values,
                            crs=crs)


def _log_components(rng: np.random.Generator, grid: _Grid, bedrock: np.ndarray,
                    mapped: np.ndarray, terrain: np.ndarray,
                    faults: np.ndarray) -> dict[str, np.ndarray]:
    """Additive parts of log10 concentration (element, y, x); see :func:`synthetic_region`."""
    offsets = np.array([u[3] for u in _UNITS])  # (unit, element)
    median = np.log10([_MEDIAN[e] for e in _EL])[:, None, None]
    # mineralised contacts: formation side of Triassic granite / granodiorite, patchy
    contact = np.zeros((len(_EL), *grid.shape))
    host = np.where(np.isin(bedrock, _CARBONATE_HOSTS), 1.0, 0.5) * (bedrock <= 6)
    patches = np.clip(0.7 + 0.5 * _grf(rng, 2, grid, 800.0), 0, 1.5)
    for code, amp, p in ((8, _SKARN_AMP, patches[0]), (7, _GREISEN_AMP, patches[1])):
        d_out = ndimage.distance_transform_edt(bedrock != code) * grid.res
        d_in = ndimage.distance_transform_edt(bedrock == code) * grid.res
        halo = host * np.exp(-d_out / 200.0) + 0.3 * (bedrock == code) * np.exp(-d_in / 60.0)
        contact += amp[:, None, None] * (p * halo)[None]
    parts = {"lithology": median + np.moveaxis(offsets[bedrock], -1, 0), "contacts": contact,
             "faults": faults}
    parts["terrain"] = np.einsum("et,tyx->eyx", _TERRAIN, terrain)
    # correlated random variation: long (sparse survey sees it), mid, short (unpredictable)
    unique = np.sqrt(1 - (_LOADINGS**2).sum(1))[:, None, None]
    for name, range_m, sd in _RANDOM:
        f = _grf(rng, 3 + len(_EL), grid, range_m)
        sd_el = np.full(len(_EL), sd)
        if range_m < 500:  # nuggety gold, silver and antimony
            sd_el[[_EL.index("Au"), _EL.index("Ag"), _EL.index("Sb")]] *= (1.6, 1.2, 1.2)
        parts[name] = sd_el[:, None, None] * (np.einsum("ef,fyx->eyx", _LOADINGS, f[:3])
                                              + unique * f[3:])
    return parts


def _disperse(c: np.ndarray, cover: np.ndarray, res: float, offset: np.ndarray | float = 0.0,
              ) -> np.ndarray:
    """Stream-sediment mixing of a bedrock signal: Cenozoic fill carries the local (400 m)
    average of its surroundings plus ``offset`` (dispersion trains), then a 75 m blur."""
    fill = ndimage.gaussian_filter(c, (0, 400 / res, 400 / res), truncate=3.0)
    c = np.where(cover, fill + offset, c)
    return ndimage.gaussian_filter(c, (0, 75 / res, 75 / res), truncate=3.0)


def _total(parts: dict[str, np.ndarray], mapped: np.ndarray, res: float) -> np.ndarray:
    """log10 concentration: dispersed geological parts + terrain + random fields."""
    geo = parts["lithology"] + parts["contacts"] + parts["faults"]
    offset = np.array(_UNITS[0][3])[:, None, None]  # Cenozoic, relative to its surroundings
    total = _disperse(geo, mapped == 0, res, offset)
    for name, _, _ in _RANDOM:
        total += parts[name]
    return total + parts["terrain"]


def _sites(rng: np.random.Generator, extent: tuple[float, ...], density: float) -> np.ndarray:
    """Sites jittered around a regular lattice of ``density`` per km² inside ``extent``."""
    xmin, ymin, xmax, ymax = extent
    spacing = 1000.0 / np.sqrt(density)
    nx, ny = max(1, round((xmax - xmin) / spacing)), max(1, round((ymax - ymin) / spacing))
    dx, dy = (xmax - xmin) / nx, (ymax - ymin) / ny
    gx, gy = np.meshgrid(xmin + dx * (np.arange(nx) + 0.5), ymax - dy * (np.arange(ny) + 0.5))
    jitter = np.clip(rng.normal(0, 0.25, (2, gx.size)), -0.45, 0.45)
    return np.c_[gx.ravel() + jitter[0] * dx, gy.ravel() + jitter[1] * dy]


def _survey(rng: np.random.Generator, grid: _Grid, logc: np.ndarray, xy: np.ndarray,
            elements: tuple[str, ...], prefix: str, crs: str) -> gpd.GeoDataFrame:
    """Sample the fields at ``xy``, add lognormal lab noise, censor below detection limits."""
    idx = [_EL.index(e) for e in elements]
    values = 10 ** grid.sample(logc[idx], xy[:, 0], xy[:, 1])
    sigma = np.sqrt(np.log1p(np.array([_RSD[e] for e in elements]) ** 2))[:, None]
    noise = rng.standard_normal((len(_EL), len(xy)))[idx]  # same draws for any subset
    values = values * np.exp(sigma * noise)
    cols: dict[str, object] = {"sample_id": [f"{prefix}-{i + 1:05d}" for i in range(len(xy))]}
    for e, v in zip(elements, values, strict=True):
        col = np.array([float(f"{a:.3g}") for a in v], dtype=object)  # 3 figures, as reported
        col[v < _DETECTION[e]] = f"<{_DETECTION[e]:g}"
        cols[e] = col
    gdf = gpd.GeoDataFrame(cols, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=crs)
    gdf.attrs = {"units": {e: schema.DEFAULT_UNITS[e] for e in elements},
                 "detection_limits": {e: _DETECTION[e] for e in elements}}
    return gdf


def _check_args(size_km: tuple[float, float], cell_size: float, densities: tuple[float, float],
                dem_cell_size: float, elements: tuple[str, ...], seed: int) -> None:
    if len(size_km) != 2 or min(size_km) <= 0:
        raise GridError(f"size_km: expected two positive numbers (km), found {size_km!r}")
    if cell_size <= 0 or dem_cell_size <= 0:
        raise GridError(f"cell_size / dem_cell_size: expected > 0 m, found "
                        f"{cell_size!r} / {dem_cell_size!r}")
    if min(densities) <= 0:
        raise GridError(f"sparse_density / dense_density: expected > 0 samples/km², "
                        f"found {densities!r}")
    unknown = [e for e in elements if e not in _EL]
    if unknown or not elements:
        raise SchemaError(f"elements: expected a non-empty subset of {_EL}, found {elements!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SchemaError(f"seed: expected a non-negative integer, found {seed!r}")


def _simulate(seed: int, bounds: tuple, dem_bounds: tuple, res: float, crs: str) -> tuple:
    """The whole model on the fine grid: faults, DEM, geology and log10 components."""
    mg = schema.make_grid(dem_bounds, res, crs)
    grid = _Grid(mg.x.values, mg.y.values, res)
    lines, fault_dist, fault_anom = _fault_model(_rng(seed, "faults"), grid, bounds)
    h = _raw_dem(_rng(seed, "dem"), grid, fault_dist)
    bedrock, mapped = _geology_raster(_rng(seed, "geology"), grid, fault_dist, h)
    floor = ndimage.gaussian_filter((mapped == 0).astype(float), 2.0)  # flatten valley floors
    h = (1 - floor) * h + floor * ndimage.gaussian_filter(h, 150.0 / res)
    elevation = 3000.0 + 900.0 * (h - h.min()) / np.ptp(h)
    parts = _log_components(_rng(seed, "fields"), grid, bedrock, mapped,
                            _terrain(elevation, res), fault_anom)
    return grid, elevation, lines, mapped, parts


def synthetic_region(
    seed: int = 0,
    size_km: tuple[float, float] = (12.8, 12.8),
    cell_size: float = 50.0,
    sparse_density: float = 4.0,
    dense_density: float = 16.0,
    dense_extent: tuple[float, float, float, float] | None = None,
    dem_cell_size: float = 25.0,
    crs: str = "EPSG:32650",
    elements: tuple[str, ...] = DEFAULT_ELEMENTS,
    origin: tuple[float, float] = (500000.0, 4000000.0),
) -> SyntheticRegion:
    """Build a realistic synthetic stream-sediment survey area (same seed, same numbers).

    The model runs on a fine internal grid (``min(dem_cell_size, cell_size / 2)`` m) a little
    larger than the region; every component draws from its own ``SeedSequence([seed, k])``.

    * **Terrain** -- fractal relief (fBm with a k^-4 spectrum + ridged octaves + V-shaped
      valleys), 3000-3900 m; fault zones eroded into linear valleys (20-45 m); valley floors
      under Cenozoic fill smoothed.
    * **Geology** -- six formations of Table 2 stacked along a folded stratigraphic function
      (fold amplitude varying along a WNW strike) and offset across faults; six intrusions as
      thresholded smooth random fields, younger cutting older; Cenozoic sediments on low,
      concave, gentle ground. The unit raster is polygonized (rasterio + shapely).
    * **log10 concentration** = regional median (Table 3) + lithology offset (its own pattern
      per element, up to +-0.45) + skarn/greisen halos on the formation side of Triassic
      granodiorite/granite contacts (Cu-Zn-Pb-Mo-Bi / Sn-Bi-Mo-Pb; e-folding 200 m; patchy
      along the contact) + orogenic Au-As-Sb-Ag anomalies along faults (Gaussian cross-section
      100-200 m wide, ore shoots with barren gaps along strike); Cenozoic fill carries the
      400 m average of its surroundings, and everything geological is mixed over 75 m
      (catchments) + a terrain effect (elevation, topographic position, slope: valleys and
      gentle ground enriched, ~0.1 log10 per sd) + correlated Gaussian random fields
      (three latent suites: Au-As-Sb, Cu-Zn-Pb-Ag, Sn-Bi-Mo, plus element-specific parts) at
      3 km (sd 0.15), 800 m (0.07) and 200 m (0.07; Au 0.11) ranges.
    * **Samples** -- sites jittered around a lattice, independent for the two surveys;
      value = bilinear truth x lognormal lab noise (5-10 % RSD), 3 significant figures,
      below the detection limit written ``"<dl"``.

    What the dense survey adds is only partly predictable: with 500 m sparse spacing, about
    20-55 % (per element) of the variance of ``log10(truth) - log10(sparse map)`` comes from
    parts with fine detail in the covariates (lithology contacts, intrusion halos, terrain),
    0-30 % from the fault anomalies (faults show only as eroded valleys and geological
    offsets) and the rest from the 200 m / 800 m random fields, the sparse interpolation
    error and lab noise, which no covariate predicts.

    Parameters
    ----------
    seed : int, default 0
        Seed; every component draws from its own ``SeedSequence([seed, k])``.
    size_km : (float, float), default (12.8, 12.8)
        Width and height of the region in km.
    cell_size : float, default 50.0
        Cell size of the survey grid carrying ``truth`` (m).
    sparse_density, dense_density : float, default 4.0 and 16.0
        Sites per km² of the 1:50,000-like and 1:25,000-like surveys.
    dense_extent : (xmin, ymin, xmax, ymax), optional
        Where the dense survey exists (CRS units); everywhere by default.
    dem_cell_size : float, default 25.0
        DEM resolution (m), deliberately different from ``cell_size``.
    crs : str, default "EPSG:32650"
        A projected CRS in metres.
    elements : tuple of str, default the paper's ten
        Subset of ``As Sb Bi Au Ag Cu Pb Zn Sn Mo``.
    origin : (float, float), default (500000.0, 4000000.0)
        Lower-left corner of the region.

    Returns
    -------
    SyntheticRegion
        ``dem``, ``geology``, ``faults``, ``samples_sparse``, ``samples_dense``, ``truth``,
        ``bounds``, ``crs``, ``cell_size``, ``elements``, ``units``, ``detection_limits``,
        ``seed``.

    Examples
    --------
    >>> import geochem_sr as gs
    >>> region = gs.synthetic_region(seed=0, size_km=(4, 4))
    >>> region.truth.dims
    ('element', 'y', 'x')
    """
    elements = tuple(elements)
    _check_args(size_km, cell_size, (sparse_density, dense_density), dem_cell_size, elements,
                seed)
    bounds = (float(origin[0]), float(origin[1]), origin[0] + 1000.0 * size_km[0],
              origin[1] + 1000.0 * size_km[1])
    survey_grid = schema.make_grid(bounds, cell_size, crs)  # checks the CRS is projected
    crs = survey_grid.rio.crs.to_string()
    margin = 4 * dem_cell_size
    dem_bounds = (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin, bounds[3] + margin)
    grid, elevation, lines, mapped, parts = _simulate(
        seed, bounds, dem_bounds, min(dem_cell_size, cell_size / 2), crs)
    logc = _total(parts, mapped, grid.res)

    dem_grid = schema.make_grid(dem_bounds, dem_cell_size, crs)
    dx, dy = np.meshgrid(dem_grid.x.values, dem_grid.y.values)
    dem_values = grid.sample(elevation, dx.ravel(), dy.ravel()).reshape(dx.shape)
    dem = xr.DataArray(dem_values.astype(np.float32), coords=dem_grid.coords,
                       dims=(schema.Y, schema.X), name=schema.ELEVATION, attrs={"units": "m"})
    dem = dem.rio.write_crs(crs).rio.write_transform(dem_grid.rio.transform())

    units = {e: schema.DEFAULT_UNITS[e] for e in elements}
    sx, sy = np.meshgrid(survey_grid.x.values, survey_grid.y.values)
    idx = [_EL.index(e) for e in elements]
    truth_vals = 10 ** grid.sample(logc[idx], sx.ravel(), sy.ravel())
    truth = xr.DataArray(
        truth_vals.reshape(len(elements), *sx.shape).astype(np.float32),
        coords={**survey_grid.coords, schema.ELEMENT: list(elements),
                schema.ELEMENT_UNITS: (schema.ELEMENT, [units[e] for e in elements])},
        dims=(schema.ELEMENT, schema.Y, schema.X), name="truth",
        attrs={"long_name": "noise-free element concentration"},
    )
    truth = truth.rio.write_crs(crs).rio.write_transform(survey_grid.rio.transform())

    extent = bounds if dense_extent is None else (
        max(bounds[0], dense_extent[0]), max(bounds[1], dense_extent[1]),
        min(bounds[2], dense_extent[2]), min(bounds[3], dense_extent[3]))
    if extent[2] <= extent[0] or extent[3] <= extent[1]:
        raise GridError(f"dense_extent: expected a box overlapping {bounds}, found {dense_extent}")
    rs, rd = _rng(seed, "sparse"), _rng(seed, "dense")
    sparse = _survey(rs, grid, logc, _sites(rs, bounds, sparse_density), elements, "S50K", crs)
    dense = _survey(rd, grid, logc, _sites(rd, extent, dense_density), elements, "S25K", crs)
    faults = gpd.GeoDataFrame({"name": [f"F{i + 1}" for i in range(len(lines))]},
                              geometry=lines, crs=crs)
    return SyntheticRegion(
        dem=dem, geology=_polygonize(mapped, grid, bounds, crs), faults=faults,
        samples_sparse=sparse, samples_dense=dense, truth=truth, bounds=bounds, crs=crs,
        cell_size=float(cell_size), elements=elements, units=units,
        detection_limits={e: _DETECTION[e] for e in elements}, seed=int(seed),
    )
