"""The area-of-applicability reference of a model, fitted on its training cells: a sample of
their normalised inputs, the dissimilarity threshold and the lithology units seen (applied to
new cells by :func:`geochem_sr.inference.applicability`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from geochem_sr import schema
from geochem_sr.errors import DataError
from geochem_sr.features import stack_inputs
from geochem_sr.models import GeoSRModel
from geochem_sr.sampling import ROLE_TRAIN
from geochem_sr.trust.roles import block_ids

__all__ = ["AOA_SAMPLE", "aoa_reference"]

#: Largest number of training cells in the area-of-applicability reference sample.
AOA_SAMPLE = 2000


def aoa_reference(ds: xr.Dataset, model: GeoSRModel, roles: xr.DataArray, seed: int,
                  n_max: int) -> dict[str, Any]:
    """Reference sample, mean distance, threshold and units seen, from the training cells."""
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import pdist

    codes = np.asarray(roles.values)
    train = codes == ROLE_TRAIN
    rows, cols = np.flatnonzero(train.any(1)), np.flatnonzero(train.any(0))
    if rows.size == 0:
        raise DataError("roles: expected training cells (code 1) for the AOA reference")
    box = {schema.Y: slice(rows[0], rows[-1] + 1), schema.X: slice(cols[0], cols[-1] + 1)}
    feats = np.asarray(stack_inputs(ds.isel(box), model.channels, model.norm_stats).values)
    tmask = train[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    ok = tmask & np.isfinite(feats).all(axis=0)
    idx = np.flatnonzero(ok.ravel())
    if idx.size < 2:
        raise DataError("AOA: expected at least 2 training cells with every input present")
    rng = np.random.default_rng(int(seed))
    if idx.size > n_max:
        idx = np.sort(rng.choice(idx, size=int(n_max), replace=False))
    ref = np.round(feats.reshape(feats.shape[0], -1)[:, idx].T.astype(np.float64), 4)
    ids = block_ids(ds, model, roles)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    blocks = ids.ravel()[idx]
    mean_d = float(np.mean(pdist(ref)))
    if not mean_d > 0:
        mean_d = 1.0
    train_di = np.empty(len(ref))
    if np.unique(blocks).size > 1:
        for blk in np.unique(blocks):
            inside = blocks == blk
            d, _ = cKDTree(ref[~inside]).query(ref[inside], k=1)
            train_di[inside] = d / mean_d
        rule_view = "nearest reference point in another spatial block"
    else:  # one block: nearest other point
        d, _ = cKDTree(ref).query(ref, k=2)
        train_di[:] = d[:, 1] / mean_d
        rule_view = "nearest other reference point (one block only)"
    q1, q3 = np.percentile(train_di, [25, 75])
    upper = q3 + 1.5 * (q3 - q1)
    thr = float(train_di[train_di <= upper].max())
    units: list[str] = []
    if schema.LITHOLOGY in ds.data_vars:
        from geochem_sr.features.geology import unit_labels

        lith = ds[schema.LITHOLOGY]
        seen = np.unique(np.asarray(lith.isel(box).values)[tmask])
        units = sorted(set(unit_labels(lith, seen)))
    return {
        "method": "dissimilarity index, Meyer & Pebesma (2021)",
        "channels": list(model.channels),
        "features": "normalised model inputs (norm_stats), equal weights",
        "reference": ref.tolist(),
        "n_reference": int(len(ref)),
        "mean_distance": mean_d,
        "threshold": thr,
        "threshold_rule": ("upper whisker (largest value <= Q3 + 1.5 IQR) of the training "
                           f"DIs, each to the {rule_view}"),
        "training_di_quantiles": {q: float(np.percentile(train_di, float(q)))
                                  for q in ("50", "90", "99")},
        "lithology_seen": units,
        "seed": int(seed),
    }
