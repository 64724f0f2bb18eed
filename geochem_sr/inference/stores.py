"""The prediction Zarr store of :func:`~geochem_sr.inference.predict_to_zarr`: its template,
the identity a rerun must match to resume it, the ledger of finished tiles and the finish."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import GeoSRError, InputFileError, ModelMismatchError
from geochem_sr.inference.applicability import AoaRule
from geochem_sr.inference.lazy import ATTR_PREFIX

__all__ = [
    "IDENTITY_KEYS",
    "LEDGER_DIR",
    "TileJob",
    "done_tiles",
    "finish",
    "ledger",
    "mark_done",
    "start_or_resume",
]

#: Directory inside an output store holding one marker file per finished tile.
LEDGER_DIR = ".geochem_sr_tiles"
#: What a rerun must share with the run that started a store to resume it.
IDENTITY_KEYS = ("model_digest", "input", "input_fingerprint", "tile", "halo", "uncertainty",
                 "applicability")


@dataclasses.dataclass(frozen=True)
class TileJob:
    """Everything a tile task needs besides the model (picklable, small)."""

    in_path: str
    out_path: str
    digest: str
    halo: int
    size_multiple: int
    tta: bool
    device: str | None
    batch_size: int | None
    reembed: bool
    y_bounds: tuple[tuple[int, int], ...]
    x_bounds: tuple[tuple[int, int], ...]
    aoa: AoaRule | None = None

    def tiles(self) -> list[tuple[int, int]]:
        """Every tile ``(i, j)``, row by row."""
        return [(i, j) for i in range(len(self.y_bounds)) for j in range(len(self.x_bounds))]


def ledger(out: Path) -> Path:
    """The folder of tile markers inside an output store."""
    return Path(out) / LEDGER_DIR


def done_tiles(out: Path) -> set[tuple[int, int]]:
    """The tiles ``(i, j)`` recorded as written in an output store's ledger."""
    d = ledger(out)
    if not d.is_dir():
        return set()
    done = set()
    for f in d.iterdir():
        if f.name.startswith("."):
            continue
        try:
            i, j = (int(v) for v in f.name.split("_"))
        except ValueError:
            continue
        done.add((i, j))
    return done


def mark_done(out: Path, i: int, j: int) -> None:
    """Record a finished tile (after its data is written), atomically."""
    import geochem_sr.io as gio

    d = ledger(out)
    d.mkdir(exist_ok=True)
    gio.write_file_atomically(d / f"{i}_{j}", "done\n")


def _store_attrs(out: Path) -> dict | None:
    f = out / ".zattrs"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


#: Largest chunk side of a prediction store: tiles of 2048 cells are written as 16 chunks of
#: 512, which a GIS reads a window of without decompressing 160 MB.
STORE_CHUNK = 512


def _chunk_side(tile: int) -> int:
    """The tile itself up to :data:`STORE_CHUNK`, else its largest divisor up to it (every
    tile's region then starts on a chunk)."""
    if tile <= STORE_CHUNK:
        return tile
    return max(d for d in range(STORE_CHUNK, 0, -1) if tile % d == 0)


def _template(pred: xr.Dataset, tile: int, identity: dict) -> xr.Dataset:
    """A store layout with empty (lazy) data, GIS attributes, provenance and the marker."""
    import dask.array as dsa

    import geochem_sr.io as gio


    n_el = pred.sizes[schema.ELEMENT]
    side = _chunk_side(int(tile))
    chunks = (n_el, min(side, pred.sizes[schema.Y]), min(side, pred.sizes[schema.X]))
    tmpl = pred.copy()
    for name, var in pred.data_vars.items():
        tmpl[name] = var.copy(data=dsa.empty(var.shape, chunks=chunks[-var.ndim:],
                                             dtype=var.dtype))
    tmpl.attrs.update({f"{ATTR_PREFIX}{k}": v for k, v in identity.items()})
    tmpl.attrs[schema.ATTR_INCOMPLETE] = (
        "prediction tiles are still being written by geochem_sr.inference.predict_to_zarr"
    )
    tmpl = gio.prepare_for_zarr(tmpl)
    for name in tmpl.data_vars:
        tmpl[name].encoding["chunks"] = chunks[-tmpl[name].ndim:]
    return tmpl


def _identity_mismatch(attrs: dict, identity: dict) -> list[str]:
    bad = []
    for k in IDENTITY_KEYS:
        have = attrs.get(f"{ATTR_PREFIX}{k}")
        if have != identity[k]:
            bad.append(f"{k}: store has {have!r}, this run {identity[k]!r}")
    return bad


def start_or_resume(out: Path, pred: xr.Dataset, tile: int, identity: dict,
                    overwrite: bool) -> bool:
    """Create the template, or check that ``out`` is ours to resume. True when complete."""
    import geochem_sr.io as gio

    if out.exists() and not overwrite:
        attrs = _store_attrs(out)
        if attrs is None or f"{ATTR_PREFIX}model_digest" not in attrs:
            raise InputFileError(
                f"output store '{out}': exists and is not a geochem_sr prediction store; "
                "choose another path or pass overwrite=True"
            )
        bad = _identity_mismatch(attrs, identity)
        if bad:
            err = ModelMismatchError if any(b.startswith("model") for b in bad) else GeoSRError
            raise err(
                f"output store '{out}': was started by another run ({'; '.join(bad)}); "
                "resuming it would mix two predictions. Delete it, choose another path, or "
                "pass overwrite=True"
            )
        if not attrs.get(schema.ATTR_INCOMPLETE):
            shutil.rmtree(ledger(out), ignore_errors=True)
            return True
        return False
    template = _template(pred, tile, identity)
    gio.write_store_atomically(out, lambda tmp: template.to_zarr(
        tmp, mode="w", compute=False, zarr_format=2, consolidated=True), manifest=False)
    return False


def finish(out: Path) -> None:
    """Drop the incomplete marker (attributes and consolidated metadata), then the ledger;
    write the manifest of the finished store."""
    import zarr

    import geochem_sr.io as gio


    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{LEDGER_DIR}")
        group = zarr.open_group(str(out), mode="r+", zarr_format=2)
        if schema.ATTR_INCOMPLETE in group.attrs:
            del group.attrs[schema.ATTR_INCOMPLETE]
        zarr.consolidate_metadata(str(out), zarr_format=2)
    shutil.rmtree(ledger(out), ignore_errors=True)
    gio.write_manifest(out)
