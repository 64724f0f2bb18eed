"""Shared test fixtures: small hand-made survey datasets."""

from __future__ import annotations

import os

# one BLAS/torch thread per test process: pytest-xdist runs one process per core
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from geochem_sr import schema  # noqa: E402


def make_survey(ny: int = 16, nx: int = 20, elements=("As", "Cu", "Au"), seed: int = 0,
                cell: float = 50.0, crs: str = "EPSG:32650") -> xr.Dataset:
    """A tiny valid survey dataset with lr, hr and terrain."""
    rng = np.random.default_rng(seed)
    g = schema.make_grid((500000, 4000000, 500000 + nx * cell, 4000000 + ny * cell), cell, crs)
    ne = len(elements)
    lr = rng.lognormal(size=(ne, ny, nx)).astype("float32")
    hr = (lr * rng.lognormal(sigma=0.1, size=lr.shape)).astype("float32")
    ds = g.assign(
        lr=((schema.ELEMENT, schema.Y, schema.X), lr),
        hr=((schema.ELEMENT, schema.Y, schema.X), hr),
        elevation=((schema.Y, schema.X), rng.normal(3000, 50, (ny, nx)).astype("float32")),
    )
    units = [schema.DEFAULT_UNITS.get(e, "ppm") for e in elements]
    return ds.assign_coords(
        {schema.ELEMENT: list(elements), schema.ELEMENT_UNITS: (schema.ELEMENT, units)}
    )


@pytest.fixture
def survey() -> xr.Dataset:
    return make_survey()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: small networks gain nothing from more, and the
    machine's cores are shared with the other test process (pytest-xdist)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
