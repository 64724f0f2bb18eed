"""Survey stores on disk: dtype round trip, crash-safe replacement, damage detection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import make_survey

import geochem_sr as gs
from geochem_sr import schema
from geochem_sr.io import stores


def _with_lithology(ds):
    lith = np.full((ds.sizes["y"], ds.sizes["x"]), 1, "int16")
    lith[:, :5] = 0
    lith[:4] = -1  # no mapped unit
    ds = ds.copy()
    ds[schema.LITHOLOGY] = ((schema.Y, schema.X), lith)
    ds[schema.LITHOLOGY].attrs.update(flag_values=[0, 1], flag_meanings="granite shale")
    ds[schema.LR_SITES] = ((schema.Y, schema.X), np.ones_like(lith))
    return ds


def test_round_trip_keeps_integer_dtypes_and_fill(tmp_path):
    ds = _with_lithology(make_survey())
    back = gs.open_survey(gs.write_survey(ds, tmp_path / "s.zarr"))
    assert back[schema.LITHOLOGY].dtype == np.int16
    assert back[schema.LR_SITES].dtype == np.int16
    np.testing.assert_array_equal(back[schema.LITHOLOGY].values, ds[schema.LITHOLOGY].values)
    gs.validate(back)  # failed before: lithology came back float32 with NaN
    again = gs.open_survey(gs.write_survey(back, tmp_path / "t.zarr"))
    np.testing.assert_array_equal(again[schema.LITHOLOGY].values, ds[schema.LITHOLOGY].values)


def test_existing_store_needs_overwrite(tmp_path):
    ds = make_survey()
    p = gs.write_survey(ds, tmp_path / "s.zarr")
    with pytest.raises(gs.InputFileError, match="exists.*overwrite"):
        gs.write_survey(ds, p, overwrite=False)


def test_write_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(gs.InputFileError, match="is a file, not a folder"):
        gs.write_survey(make_survey(), tmp_path / "f" / "s.zarr")
    (tmp_path / "g.zarr").write_text("x")
    with pytest.raises(gs.InputFileError, match="a file of that name exists"):
        gs.write_survey(make_survey(), tmp_path / "g.zarr")


def test_missing_parent_folder_is_created(tmp_path):
    p = gs.write_survey(make_survey(), tmp_path / "a" / "b" / "s.zarr")
    assert gs.open_survey(p).sizes["x"] == 20


_KILL = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import make_survey
import geochem_sr as gs
from geochem_sr.io import stores
real = os.replace
def replace(a, b):
    real(a, b)
    if str(a if {when!r} == "aside" else b) == {path!r}:
        os.kill(os.getpid(), signal.SIGKILL)
stores.os.replace = replace
gs.write_survey(make_survey(seed=1), {path!r})
"""


def _killed_write(path, when):
    """Write a new survey at ``path`` in a process killed (SIGKILL) right after the old
    store is renamed aside (``when="aside"``) or the new one renamed in (``"in"``)."""
    code = textwrap.dedent(_KILL.format(tests=os.path.dirname(__file__), when=when,
                                        path=str(path)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr.decode()[-2000:]


def test_replacement_killed_between_renames_is_named_and_recovered(tmp_path):
    path = tmp_path / "s.zarr"
    old = make_survey(seed=0)
    gs.write_survey(old, path)
    _killed_write(path, "aside")  # old store moved aside, new one not yet in place
    assert not path.exists()
    left = stores._leftovers(path)
    assert {p.name.split(".")[-1][:3] for p in left} == {"tmp", "old"}
    with pytest.raises(gs.IncompleteStoreError, match="interrupted write"):
        gs.open_survey(path)
    for p in left:  # a temporary store is never opened as a survey
        with pytest.raises(gs.IncompleteStoreError, match="temporary store"):
            gs.open_survey(p)
    new = make_survey(seed=2)
    gs.write_survey(new, path)  # cleans up the leftovers
    assert stores._leftovers(path) == []
    np.testing.assert_array_equal(gs.open_survey(path)["lr"].values, new["lr"].values)


def test_replacement_killed_after_renaming_in_keeps_the_new_store(tmp_path):
    path = tmp_path / "s.zarr"
    gs.write_survey(make_survey(seed=0), path)
    _killed_write(path, "in")  # new store in place, old one not yet deleted
    np.testing.assert_array_equal(gs.open_survey(path)["lr"].values,
                                  make_survey(seed=1)["lr"].values)


def test_failed_write_leaves_the_old_store(tmp_path):
    path = tmp_path / "s.zarr"
    ds = make_survey(seed=0)
    gs.write_survey(ds, path)

    def boom(tmp):
        ds.to_zarr(tmp, mode="w", zarr_format=2)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        stores.write_store_atomically(path, boom)
    assert stores._leftovers(path) == []
    np.testing.assert_array_equal(gs.open_survey(path)["lr"].values, ds["lr"].values)


@pytest.fixture
def store(tmp_path):
    ds = make_survey(ny=40, nx=40)
    return gs.write_survey(ds, tmp_path / "s.zarr", chunks={"element": -1, "y": 16, "x": 16})


def test_deleted_chunk_is_reported(store):
    (store / "lr" / "0.1.1").unlink()
    with pytest.raises(gs.DataError, match=r"'lr/0.1.1' of variable 'lr' is missing"):
        gs.open_survey(store)


def test_deleted_array_metadata_is_reported(store):
    (store / "lr" / ".zarray").unlink()
    with pytest.raises(gs.DataError, match=r"variables \['lr'\] are missing"):
        gs.open_survey(store)


def test_truncated_chunk_is_reported(store):
    f = store / "hr" / "0.0.0"
    f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(gs.DataError, match=r"'hr/0.0.0' of variable 'hr' has 10 bytes"):
        gs.open_survey(store)


def test_fingerprint_sees_changed_values(tmp_path):
    ds = make_survey()
    a = stores.store_fingerprint(gs.write_survey(ds, tmp_path / "a.zarr"))
    b = stores.store_fingerprint(gs.write_survey(ds, tmp_path / "b.zarr"))
    assert a == b  # same data, same identity, wherever it lies
    ds2 = ds.copy()
    ds2["lr"] = ds["lr"] * np.where(ds["element"] == "Cu", 3, 1).astype("float32")[:, None, None]
    c = stores.store_fingerprint(gs.write_survey(ds2, tmp_path / "a.zarr"))
    assert c != a
