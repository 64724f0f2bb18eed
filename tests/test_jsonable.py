"""to_jsonable: one converter of numpy values, tuples, sets and paths into plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from geochem_sr.jsonable import to_jsonable


def test_nested_values_become_strict_json() -> None:
    obj = {"a": (np.float32(1.5), np.int64(3), float("nan")), 2: Path("x/y"),
           "arr": np.array([[1.0, np.inf], [0.5, 2.0]]), "s": {np.bool_(True)},
           "none": None, "obj": object}
    out = to_jsonable(obj)
    assert out["a"] == [1.5, 3, None] and isinstance(out["a"][1], int)
    assert out["2"] == str(Path("x/y"))
    assert out["arr"] == [[1.0, None], [0.5, 2.0]]
    assert out["s"] == [True] and out["none"] is None and out["obj"] == str(object)
    json.dumps(out, allow_nan=False)  # strict JSON


def test_usable_as_json_default_hook() -> None:
    text = json.dumps({"x": np.float32(0.25), "p": Path("a")}, default=to_jsonable)
    assert json.loads(text) == {"x": 0.25, "p": "a"}
