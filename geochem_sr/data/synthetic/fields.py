"""The synthetic model on its fine internal grid: faults, relief, geology, log10 fields.

:func:`simulate` runs the whole model; :func:`log10_concentration` adds up its parts
(dispersed by :func:`disperse`); :func:`polygonize` turns the unit raster into the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from scipy import ndimage

from geochem_sr import schema
from geochem_sr.data.synthetic.tables import (
    CARBONATE_HOSTS,
    ELEMENTS,
    FAULT_AMP,
    FORMATIONS,
    GREISEN_AMP,
    INTRUSIONS,
    LOADINGS,
    MEDIAN,
    RANDOM_FIELDS,
    SKARN_AMP,
    STREAMS,
    TERRAIN_EFFECT,
    UNITS,
)

__all__ = [
    "ModelGrid",
    "disperse",
    "log10_concentration",
    "polygonize",
    "simulate",
    "stream_rng",
]


@dataclass(frozen=True)
class ModelGrid:
    """The fine internal model grid (cell centres, y descending)."""

    x: np.ndarray
    y: np.ndarray
    res: float

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.y.size, self.x.size

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every cell centre, (ny, nx) each."""
        return np.meshgrid(self.x, self.y)

    def sample(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear values of ``field`` (..., ny, nx) at points (x, y)."""
        rows, cols = (self.y[0] - y) / self.res, (x - self.x[0]) / self.res
        flat = field.reshape(-1, *self.shape)
        out = [ndimage.map_coordinates(f, [rows, cols], order=1, mode="nearest") for f in flat]
        return np.stack(out).reshape(*field.shape[:-2], np.size(x))


def stream_rng(seed: int, part: str) -> np.random.Generator:
    """The random generator of one part of the model (:data:`.tables.STREAMS`) for a seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, STREAMS[part]]))


def _zscore(a: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    return (a - a.mean(axis=axis, keepdims=True)) / a.std(axis=axis, keepdims=True)


def _spectral(rng: np.random.Generator, n: int, grid: ModelGrid, pad_m: float,
              amp) -> np.ndarray:
    """``n`` unit-variance random fields: white noise filtered by ``amp(k²)`` via FFT."""
    from scipy import fft

    pad = int(min(max(grid.shape), np.ceil(pad_m / grid.res)))  # keeps wrap-around out
    ny, nx = fft.next_fast_len(grid.shape[0] + pad), fft.next_fast_len(grid.shape[1] + pad, True)
    k2 = np.fft.fftfreq(ny, grid.res)[:, None] ** 2 + np.fft.rfftfreq(nx, grid.res)[None, :] ** 2
    spec = fft.rfft2(rng.standard_normal((n, ny, nx))) * amp(k2)
    return _zscore(fft.irfft2(spec, s=(ny, nx))[:, : grid.shape[0], : grid.shape[1]], (1, 2))


def _grf(rng: np.random.Generator, n: int, grid: ModelGrid, range_m: float,
         nu: float = 1.0) -> np.ndarray:
    """``n`` Gaussian random fields with a Matérn spectrum of practical range ``range_m``."""
    scale = (2 * np.pi * range_m / 4.0) ** 2
    return _spectral(rng, n, grid, range_m, lambda k2: (1.0 + scale * k2) ** (-(nu + 1) / 2))


def _smooth1d(rng: np.random.Generator, n: int, sigma_cells: float) -> np.ndarray:
    return _zscore(ndimage.gaussian_filter1d(rng.standard_normal(n), sigma_cells))


def _fault_model(rng: np.random.Generator, grid: ModelGrid,
                 bounds: tuple[float, ...]) -> tuple:
    """Faults: gently curved traces, signed distance to each, and their ore-shoot profiles."""
    from shapely.geometry import LineString, box

    xmin, ymin, xmax, ymax = bounds
    w, h = xmax - xmin, ymax - ymin
    n_faults = max(3, round(5 * np.sqrt(w * h / 12800.0**2)))
    half = np.hypot(w, h)
    t1 = np.arange(-half, half + grid.res, grid.res)
    xx, yy = grid.mesh()
    lines, dists = [], []
    anomaly = np.zeros((len(ELEMENTS), *grid.shape))
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
        strength = rng.uniform(0.6, 1.2) * np.exp(rng.normal(0, 0.3, len(ELEMENTS))) * FAULT_AMP
        shoot = np.interp(t, t1, amp) * np.exp(-0.5 * (dists[-1] / np.interp(t, t1, width)) ** 2)
        anomaly += strength[:, None, None] * shoot
    return lines, np.stack(dists), anomaly


def _raw_dem(rng: np.random.Generator, grid: ModelGrid, fault_dist: np.ndarray) -> np.ndarray:
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


def _geology_raster(rng: np.random.Generator, grid: ModelGrid, fault_dist: np.ndarray,
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
    shares = np.cumsum([f for _, f in FORMATIONS])[:-1]
    codes = np.array([c for c, _ in FORMATIONS])
    bedrock = codes[np.digitize(s, np.quantile(s, shares))]
    for code, frac, range_m in INTRUSIONS:
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


def polygonize(units: np.ndarray, grid: ModelGrid, bounds: tuple, crs: str) -> gpd.GeoDataFrame:
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
    table = [UNITS[c] for c in gdf["code"]]
    return gpd.GeoDataFrame({"unit": [t[0] for t in table], "age": [t[1] for t in table],
                             "rock_class": [t[2] for t in table]}, geometry=gdf.geometry.values,
                            crs=crs)


def _log_components(rng: np.random.Generator, grid: ModelGrid, bedrock: np.ndarray,
                    mapped: np.ndarray, terrain: np.ndarray,
                    faults: np.ndarray) -> dict[str, np.ndarray]:
    """Additive parts of log10 concentration (element, y, x); see :func:`synthetic_region`."""
    offsets = np.array([u[3] for u in UNITS])  # (unit, element)
    median = np.log10([MEDIAN[e] for e in ELEMENTS])[:, None, None]
    # mineralised contacts: formation side of Triassic granite / granodiorite, patchy
    contact = np.zeros((len(ELEMENTS), *grid.shape))
    host = np.where(np.isin(bedrock, CARBONATE_HOSTS), 1.0, 0.5) * (bedrock <= 6)
    patches = np.clip(0.7 + 0.5 * _grf(rng, 2, grid, 800.0), 0, 1.5)
    for code, amp, p in ((8, SKARN_AMP, patches[0]), (7, GREISEN_AMP, patches[1])):
        d_out = ndimage.distance_transform_edt(bedrock != code) * grid.res
        d_in = ndimage.distance_transform_edt(bedrock == code) * grid.res
        halo = host * np.exp(-d_out / 200.0) + 0.3 * (bedrock == code) * np.exp(-d_in / 60.0)
        contact += amp[:, None, None] * (p * halo)[None]
    parts = {"lithology": median + np.moveaxis(offsets[bedrock], -1, 0), "contacts": contact,
             "faults": faults}
    parts["terrain"] = np.einsum("et,tyx->eyx", TERRAIN_EFFECT, terrain)
    # correlated random variation: long (sparse survey sees it), mid, short (unpredictable)
    unique = np.sqrt(1 - (LOADINGS**2).sum(1))[:, None, None]
    for name, range_m, sd in RANDOM_FIELDS:
        f = _grf(rng, 3 + len(ELEMENTS), grid, range_m)
        sd_el = np.full(len(ELEMENTS), sd)
        if range_m < 500:  # nuggety gold, silver and antimony
            nuggety = [ELEMENTS.index("Au"), ELEMENTS.index("Ag"), ELEMENTS.index("Sb")]
            sd_el[nuggety] *= (1.6, 1.2, 1.2)
        parts[name] = sd_el[:, None, None] * (np.einsum("ef,fyx->eyx", LOADINGS, f[:3])
                                              + unique * f[3:])
    return parts


def disperse(c: np.ndarray, cover: np.ndarray, res: float, offset: np.ndarray | float = 0.0,
             ) -> np.ndarray:
    """Stream-sediment mixing of a bedrock signal: Cenozoic fill carries the local (400 m)
    average of its surroundings plus ``offset`` (dispersion trains), then a 75 m blur."""
    fill = ndimage.gaussian_filter(c, (0, 400 / res, 400 / res), truncate=3.0)
    c = np.where(cover, fill + offset, c)
    return ndimage.gaussian_filter(c, (0, 75 / res, 75 / res), truncate=3.0)


def log10_concentration(parts: dict[str, np.ndarray], mapped: np.ndarray,
                        res: float) -> np.ndarray:
    """log10 concentration: dispersed geological parts + terrain + random fields."""
    geo = parts["lithology"] + parts["contacts"] + parts["faults"]
    offset = np.array(UNITS[0][3])[:, None, None]  # Cenozoic, relative to its surroundings
    total = disperse(geo, mapped == 0, res, offset)
    for name, _, _ in RANDOM_FIELDS:
        total += parts[name]
    return total + parts["terrain"]


def simulate(seed: int, bounds: tuple, dem_bounds: tuple, res: float, crs: str) -> tuple:
    """The whole model on the fine grid: faults, DEM, geology and log10 components.

    Returns ``(grid, elevation, fault_lines, mapped_units, log10_parts)``: the
    :class:`ModelGrid` over ``dem_bounds``, elevation (m), the fault traces clipped to
    ``bounds``, the mapped unit codes (into :data:`.tables.UNITS`) and the additive log10
    parts (element, y, x) that :func:`log10_concentration` adds up.
    """
    mg = schema.make_grid(dem_bounds, res, crs)
    grid = ModelGrid(mg.x.values, mg.y.values, res)
    lines, fault_dist, fault_anom = _fault_model(stream_rng(seed, "faults"), grid, bounds)
    h = _raw_dem(stream_rng(seed, "dem"), grid, fault_dist)
    bedrock, mapped = _geology_raster(stream_rng(seed, "geology"), grid, fault_dist, h)
    floor = ndimage.gaussian_filter((mapped == 0).astype(float), 2.0)  # flatten valley floors
    h = (1 - floor) * h + floor * ndimage.gaussian_filter(h, 150.0 / res)
    elevation = 3000.0 + 900.0 * (h - h.min()) / np.ptp(h)
    parts = _log_components(stream_rng(seed, "fields"), grid, bedrock, mapped,
                            _terrain(elevation, res), fault_anom)
    return grid, elevation, lines, mapped, parts
    return grid, elevation, lines, mapped, parts
