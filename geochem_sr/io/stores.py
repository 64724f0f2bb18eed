"""Survey and prediction Zarr stores: written atomically, checked and opened with their CRS.

Stores are Zarr format 2 by default so that GDAL opens them, with the CF ``grid_mapping``
on every array (no GDAL ``_CRS``: :func:`gis_attrs`) and NaN ``_FillValue`` (``lithology``:
-1).

* **Atomic writes.** A store is written to a hidden temporary sibling
  (``.<name>.tmp-<id>``); an existing store is first renamed aside (``.<name>.old-<id>``),
  the new one renamed into place, then the old one deleted. A crash leaves either the old
  store, or the new one, or — between the two renames — no store at ``path`` and the two
  hidden siblings, which :func:`open_survey` names (it never opens a temporary store) and
  the next write cleans up.
* **Manifest.** A finished store holds ``.geochem_sr_manifest.json``: its variables and
  the size of every file. :func:`open_survey` checks it, so a deleted or truncated chunk, or
  a deleted array, is reported with the variable and file instead of reading as NaN.
* **Fingerprint.** :func:`store_fingerprint` hashes the content of every file: the identity
  of the data a prediction was started from.
* **Round trip.** Integer variables come back with their dtype and fill value (xarray's CF
  decoding would turn ``lithology`` into float with NaN).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import (
    DataError,
    GeoSRError,
    IncompleteStoreError,
    InputFileError,
)

__all__ = ["write_survey", "open_survey", "write_store_atomically", "gis_attrs",
           "prepare_for_zarr", "decode_attrs", "store_fingerprint", "write_manifest",
           "check_manifest", "MANIFEST"]

#: File of a finished store listing its variables and the size of each of its files.
MANIFEST = ".geochem_sr_manifest.json"
#: Names geochem_sr keeps inside a store that are not Zarr's (manifest, tile ledger).
_OWN_PREFIX = ".geochem_sr"
_SIBLING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-[0-9a-f]{8}$")


def gis_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Add the CF ``grid_mapping`` to every gridded variable (and no GDAL ``_CRS``).

    GDAL 3.8+ (rasterio's) reads the CRS from the CF grid mapping. GDAL 3.6 (Debian 12's
    ``gdal-bin`` and QGIS) swaps the CRS axes of a Zarr array that carries ``_CRS`` and puts
    the map in the wrong hemisphere; without it, it places the grid right and shows no CRS.
    GeoTIFFs (``geochem-sr export``) carry their CRS for every GDAL.
    """
    out = ds.copy()
    for name, var in out.data_vars.items():
        if schema.X in var.dims and schema.Y in var.dims:
            var.encoding.pop("grid_mapping", None)
            var.attrs["grid_mapping"] = schema.SPATIAL_REF
            var.attrs.pop("_CRS", None)
            if np.issubdtype(var.dtype, np.floating):
                var.encoding["_FillValue"] = np.nan
            elif name == schema.LITHOLOGY:
                var.encoding["_FillValue"] = -1
    return out


def prepare_for_zarr(ds: xr.Dataset) -> xr.Dataset:
    out = gis_attrs(ds)
    # attrs must be JSON-serializable: dicts and lists of str kept, others as JSON text
    for obj in (out, *out.variables.values()):
        for key, val in list(obj.attrs.items()):
            if key == "_CRS":
                continue
            if isinstance(val, dict):
                obj.attrs[key] = json.dumps(val)
            elif isinstance(val, np.ndarray):
                obj.attrs[key] = val.tolist()
    for name in out.variables:
        out[name].encoding.pop("chunks", None)
        out[name].encoding.pop("preferred_chunks", None)
    if schema.ELEMENT in out.coords:
        out = out.assign_coords({schema.ELEMENT: out[schema.ELEMENT].astype(str)})
    if schema.ELEMENT_UNITS in out.coords:
        out = out.assign_coords({schema.ELEMENT_UNITS: out[schema.ELEMENT_UNITS].astype(str)})
    return out


def write_survey(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    zarr_format: int = 2,
    overwrite: bool = True,
    chunks: Mapping[str, int] | None = None,
    validate: bool = True,
) -> Path:
    """Write a survey dataset to a Zarr store a GIS opens.

    The store is written to a temporary sibling path and renamed into place, so that an
    error never leaves a half-written store at ``path``.

    Parameters
    ----------
    ds : xarray.Dataset
        A survey dataset (validated first unless ``validate=False``).
    path : path
        Target ``.zarr`` directory.
    zarr_format : {2, 3}, default 2
        Format 2 is what GDAL 3.10 (rasterio) reads.
    overwrite : bool, default True
        Replace an existing store at ``path``.
    chunks : mapping, optional
        Chunking on disk; default :func:`geochem_sr.schema.default_chunks`.
    validate : bool, default True
        Run :func:`geochem_sr.schema.validate` (structure only) before writing.

    Returns
    -------
    pathlib.Path
        The written store.
    """
    path = Path(path)
    if validate:
        schema.validate(ds, require=(), check_values=False)
    chunk_spec = dict(chunks or schema.default_chunks())
    chunk_spec = {d: (ds.sizes[d] if c == -1 else min(c, ds.sizes[d]))
                  for d, c in chunk_spec.items() if d in ds.dims}
    out = prepare_for_zarr(ds).chunk(chunk_spec)
    return write_store_atomically(
        path, lambda tmp: out.to_zarr(tmp, mode="w", zarr_format=zarr_format, consolidated=True),
        overwrite=overwrite)


def check_writable(path: Path, overwrite: bool) -> None:
    """Raise :class:`InputFileError` unless a store can be written at ``path``.

    The parent folder is created when missing; a regular file on the way, an existing
    regular file at ``path``, or an existing store without ``overwrite`` is refused.
    """
    path = Path(path)
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            raise InputFileError(
                f"output store '{path}': '{parent}' is a file, not a folder; choose another path"
            )
    if path.exists() and not path.is_dir():
        raise InputFileError(f"output store '{path}': a file of that name exists; choose "
                             "another path or delete it")
    if path.exists() and not overwrite:
        raise InputFileError(f"output store '{path}': exists (pass overwrite=True)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"output store '{path}': cannot create its folder ({exc})") from exc


def _leftovers(path: Path) -> list[Path]:
    """Hidden temporary/old siblings of ``path`` left by an interrupted write."""
    parent = path.parent
    if not parent.is_dir():
        return []
    out = []
    for p in parent.iterdir():
        m = _SIBLING_RE.match(p.name)
        if m and m.group("name") == path.name:
            out.append(p)
    return sorted(out)


def write_store_atomically(path: Path, write: Callable[[Path], object], *,
                           manifest: bool = True, overwrite: bool = True) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``path``, then move it into place.

    An exception (or an interrupt) removes the temporary store, so ``path`` never holds a
    half-written store. An existing store is renamed aside before the new one is renamed
    in and deleted after, so a crash at any moment leaves a complete store (at ``path`` or,
    between the two renames, as a hidden sibling that :func:`open_survey` names). Leftovers
    of earlier interrupted writes are removed first. The finished store gets a manifest
    (:func:`write_manifest`) unless ``manifest=False`` (a store that is filled later).
    ``path`` is checked first (:func:`check_writable`; an existing store is replaced only
    with ``overwrite``).
    """
    path = Path(path)
    check_writable(path, overwrite)
    for old in _leftovers(path):
        shutil.rmtree(old, ignore_errors=True)
    token = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.name}.tmp-{token}")
    aside = path.with_name(f".{path.name}.old-{token}")
    try:
        write(tmp)
        if manifest:
            write_manifest(tmp)
        if path.exists():
            os.replace(path, aside)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside.exists() and not path.exists():
            os.replace(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return path


def _store_files(path: Path) -> list[Path]:
    """Every file of a store that Zarr owns (not the manifest nor the tile ledger), sorted."""
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(_OWN_PREFIX))
        files.extend(Path(root) / n for n in names if not n.startswith(_OWN_PREFIX))
    return sorted(files)


def _is_array(folder: Path) -> bool:
    """Whether a folder holds Zarr array metadata (``.zarray`` or ``zarr.json``)."""
    return (folder / ".zarray").is_file() or (folder / "zarr.json").is_file()


def _variables_on_disk(path: Path) -> list[str]:
    """Array names of a store (folders holding ``.zarray`` or ``zarr.json``), sorted."""
    return sorted(p.name for p in Path(path).iterdir() if p.is_dir() and _is_array(p))


def write_manifest(path: Path) -> Path:
    """Record the variables of a finished store and the size of each file (``MANIFEST``)."""
    path = Path(path)
    files = {f.relative_to(path).as_posix(): f.stat().st_size for f in _store_files(path)}
    manifest = {"format": 1, "variables": _variables_on_disk(path), "files": files}
    out = path / MANIFEST
    tmp = path / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, sort_keys=True))
    os.replace(tmp, out)
    return out


def check_manifest(path: Path, label: str) -> None:
    """Raise :class:`DataError` when a store differs from its manifest (damage).

    Checks that every variable and file the manifest lists is there with its size. A store
    without a manifest (written by other tools) is not checked.
    """
    path = Path(path)
    f = path / MANIFEST
    if not f.is_file():
        return
    try:
        manifest = json.loads(f.read_text())
        variables, files = list(manifest["variables"]), dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{label}: its manifest {MANIFEST} is damaged ({exc}); rewrite the "
                        "store") from exc
    gone = [v for v in variables if not _is_array(path / v)]
    if gone:
        raise DataError(f"{label}: variables {gone} are missing or their array metadata was "
                        "deleted (the store is damaged); rewrite it")
    for rel, size in files.items():
        p = path / rel
        var = rel.split("/")[0]
        if not p.is_file():
            raise DataError(f"{label}: file '{rel}' of variable '{var}' is missing (the store "
                            "is damaged: a missing chunk would read as NaN); rewrite the store")
        if p.stat().st_size != size:
            raise DataError(f"{label}: file '{rel}' of variable '{var}' has "
                            f"{p.stat().st_size} bytes, expected {size} (truncated or changed "
                            "after writing); rewrite the store")


def store_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 over the names and contents of every file of a store: its data's identity.

    Changes whenever any value, attribute or chunk changes, whatever tool rewrote the
    store; reads the whole store once (compressed bytes, fast next to any computation on
    them).
    """
    path = Path(path)
    h = hashlib.sha256()
    for f in _store_files(path):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(hashlib.blake2b(fh.read(), digest_size=16).digest())
    return h.hexdigest()


def decode_attrs(ds: xr.Dataset) -> xr.Dataset:
    """JSON-text attributes back into dicts, integer variables back to their dtype, small
    coordinates (``element_units``, ``spatial_ref``) into memory.

    xarray decodes an integer array with a ``_FillValue`` (``lithology``: -1) as float with
    NaN; this restores the integer dtype and the fill value, lazily.
    """
    for name in list(ds.data_vars):
        var = ds[name]
        enc_dtype = var.encoding.get("dtype")
        fill = var.encoding.get("_FillValue")
        if (enc_dtype is not None and np.issubdtype(np.dtype(enc_dtype), np.integer)
                and np.issubdtype(var.dtype, np.floating) and fill is not None):
            restored = var.fillna(fill).astype(enc_dtype)
            restored.attrs = dict(var.attrs)
            restored.encoding = dict(var.encoding)
            ds[name] = restored
    for name in list(ds.coords):
        coord = ds.coords[name]
        if name not in ds.indexes and coord.ndim <= 1 and coord.size <= 10_000:
            coord.load()  # small labels (element_units, spatial_ref): read once, not per use
    for obj in (ds, *ds.variables.values()):
        for key, val in list(obj.attrs.items()):
            if isinstance(val, str) and val[:1] == "{" and key != "_CRS":
                try:
                    obj.attrs[key] = json.loads(val)
                except ValueError:
                    pass
    return ds


def open_survey(
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a survey dataset written by :func:`write_survey` (or a prediction store).

    Parameters
    ----------
    path : path
        The ``.zarr`` store.
    chunks : optional
        Passed to :func:`xarray.open_zarr`; default keeps the on-disk chunks (lazy).
    allow_incomplete : bool, default False
        Open a store whose writing was not finished (with a warning) instead of raising.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed), CRS restored (``decode_coords="all"``).

    Raises
    ------
    InputFileError
        Not a Zarr store.
    IncompleteStoreError
        The store is marked as not finished.
    """
    import rioxarray  # noqa: F401

    path = Path(path)
    label = f"survey store '{path}'"
    m = _SIBLING_RE.match(path.name)
    if m:
        raise IncompleteStoreError(
            f"{label}: is a temporary store left by an interrupted write of "
            f"'{m.group('name')}' (it may be incomplete); rerun that write")
    if not path.exists():
        left = _leftovers(path)
        if left:
            raise IncompleteStoreError(
                f"{label}: not found, but an interrupted write left {[p.name for p in left]} "
                "beside it; rerun the command that writes it (a '.old-' folder holds the "
                "previous store: rename it back to recover that one)")
        raise InputFileError(f"{label}: not found")
    if not path.is_dir():
        raise InputFileError(f"{label}: is a file, expected a Zarr store (a folder)")
    check_manifest(path, label)
    kwargs: dict[str, Any] = {"decode_coords": "all"}
    if chunks is not None:
        kwargs["chunks"] = chunks
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = xr.open_zarr(path, **kwargs)
    except GeoSRError:
        raise
    except Exception as exc:
        raise InputFileError(f"survey store '{path}': cannot be opened as Zarr ({exc})") from exc
    ds = decode_attrs(ds)
    if ds.attrs.get(schema.ATTR_INCOMPLETE):
        msg = (
            f"survey store '{path}': writing was not finished "
            f"({ds.attrs.get(schema.ATTR_INCOMPLETE)}); rerun the command that writes it to resume"
        )
        if not allow_incomplete:
            raise IncompleteStoreError(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    return ds
