"""The CLI on a small survey written by hand: the README's "small area whose covariates
follow position" (issue 16's do-no-harm on small surveys).

Writes sparse and dense sample CSVs (500 m and 250 m spacing over 6.4 km, log-normal
values around smooth trends, one censored ``<0.5``), a DEM that is a tilted plane with
gentle bumps, geology (three units over the western 70 %) and a fault, then runs
``geochem-sr build`` and ``geochem-sr train --network auto --epochs 3`` and prints the
model's summary: per element the test-block scores and the verdicts.

Run::

    .venv/bin/python benchmarks/cli_hand_survey.py /tmp/hand    # about 1 min
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

ELEMENTS = ("As", "Sb", "Bi", "Au", "Ag", "Cu", "Pb", "Zn", "Sn", "Mo")
X0, Y0, SIDE = 500000.0, 4000000.0, 6400.0


def write_files(folder: Path, seed: int = 7) -> None:
    """The samples, DEM, geology and faults, as a user would have them."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import rasterio
    from rasterio.transform import from_origin
    from shapely.geometry import LineString, Polygon

    rng = np.random.default_rng(seed)
    for spacing, name in ((500.0, "sparse"), (250.0, "dense")):
        xs = np.arange(X0 + spacing / 2, X0 + SIDE, spacing)
        ys = np.arange(Y0 + spacing / 2, Y0 + SIDE, spacing)
        x, y = (a.ravel() for a in np.meshgrid(xs, ys))
        x, y = x + rng.normal(0, 40, x.size), y + rng.normal(0, 40, y.size)
        df = pd.DataFrame({"sample_id": [f"{name}{i}" for i in range(x.size)], "x": x, "y": y})
        for k, el in enumerate(ELEMENTS):
            trend = 0.3 * np.sin((x - X0) / 900 + k) + 0.2 * np.cos((y - Y0) / 1300)
            df[el] = np.round(10 ** (1 + trend + rng.normal(0, 0.15, x.size)), 3)
        df["Au"] = df["Au"].astype(object)
        df.loc[3, "Au"] = "<0.5"
        df.to_csv(folder / f"{name}.csv", index=False)
    n = 128
    yy, xx = np.mgrid[0:n, 0:n]
    dem = (1200 + 3 * xx + 2 * yy + 80 * np.sin(xx / 9) * np.cos(yy / 13)).astype("float32")
    with rasterio.open(folder / "dem.tif", "w", driver="GTiff", height=n, width=n, count=1,
                       dtype="float32", crs="EPSG:32650",
                       transform=from_origin(X0 - 400, Y0 + SIDE + 400, 57.0, 57.0)) as f:
        f.write(dem, 1)
    a, b, top = X0 + 2500, X0 + 4480, Y0 + SIDE
    gpd.GeoDataFrame({"unit": ["granite", "limestone", "sandstone"]}, geometry=[
        Polygon([(X0, Y0), (a, Y0), (a, top), (X0, top)]),
        Polygon([(a, Y0), (b, Y0), (b, Y0 + 3000), (a, Y0 + 3000)]),
        Polygon([(a, Y0 + 3000), (b, Y0 + 3000), (b, top), (a, top)])],
        crs="EPSG:32650").to_file(folder / "geology.gpkg")
    gpd.GeoDataFrame({"name": ["F1"]}, geometry=[LineString(
        [(X0 + 500, Y0 + 200), (X0 + 5800, Y0 + 6000)])],
        crs="EPSG:32650").to_file(folder / "faults.gpkg")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    args = p.parse_args()
    from geochem_sr.cli import main as cli

    args.folder.mkdir(parents=True, exist_ok=True)
    write_files(args.folder)
    f = args.folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cli(["build", str(f / "survey.zarr"), "--sparse", str(f / "sparse.csv"), "--dense",
             str(f / "dense.csv"), "--crs", "EPSG:32650", "--dem", str(f / "dem.tif"),
             "--geology", str(f / "geology.gpkg"), "--faults", str(f / "faults.gpkg"),
             "--cell-size", "50", "--overwrite"])
        return cli(["train", str(f / "survey.zarr"), "--model-out", str(f / "model.pt"),
                    "--network", "auto", "--epochs", "3"])


if __name__ == "__main__":
    raise SystemExit(main())
