"""A trained model and all that applying it needs, in one file read without unpickling code.

The file is a ``torch.save`` of a plain dict ``{"format", "meta_json", "state_dict",
"digest"}``: tensors, strings and numbers only, so :func:`torch.load` with
``weights_only=True`` reads it and no code from the file is ever executed. ``digest`` is the
SHA-256 of the metadata and of every tensor's bytes; a file whose content does not match its
digest (edited, truncated, tampered) is refused with :class:`ModelFileError`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import ModelFileError, ModelMismatchError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import xarray as xr

__all__ = ["GeoSRModel", "FORMAT"]

FORMAT = "geochem_sr.model/1"


def _digest(meta_json: str, state: Mapping[str, Any]) -> str:
    import torch

    h = hashlib.sha256(meta_json.encode())
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass
class GeoSRModel:
    """A trained super-resolution network with its metadata.

    Attributes
    ----------
    network_name : str
        Registry name (``geochem_sr.models.get_model``), e.g. ``"multilevel_unet"``.
    network_config : dict
        Constructor keywords of the network (``in_channels``, ``out_channels``, ...).
    state_dict : dict of str -> torch.Tensor
        The weights.
    inputs : str
        The input set, e.g. ``"geochem+terrain+geology"``.
    channels : list of str
        Input channel names in order (:func:`geochem_sr.channels.channel_names`).
    elements : list of str
        Output elements in order.
    units : dict
        Element -> unit of the data the model was trained on.
    norm_stats : dict
        Channel -> (mean, std) used to normalise inputs.
    geology_vocabulary : str or None
        JSON of the geology word vectors the model was trained with.
    patch_size : int
        Training patch size.
    shrinkage : dict
        Element -> factor in [0, 1] applied to the predicted residual (do-no-harm).
    std_scale : dict
        Element -> factor calibrating the predictive standard deviation.
    validation : dict
        Spatial validation report (per element), filled by training / cross-validation.
    history : list of dict
        Per-epoch training record (loss, validation loss, lr, ...).
    aoa : dict
        Area-of-applicability reference (training feature sample and threshold).
    extra : dict
        Anything else (seed, epochs, training region, ...).
    """

    network_name: str
    network_config: dict[str, Any]
    state_dict: dict[str, Any]
    inputs: str
    channels: list[str]
    elements: list[str]
    units: dict[str, str]
    norm_stats: dict[str, tuple[float, float]]
    geology_vocabulary: str | None = None
    patch_size: int = 32
    shrinkage: dict[str, float] = dataclasses.field(default_factory=dict)
    std_scale: dict[str, float] = dataclasses.field(default_factory=dict)
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    aoa: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    package_version: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        if not self.package_version:
            from geochem_sr import __version__

            self.package_version = __version__

    # ------------------------------------------------------------------ network
    def build_network(self, device: str | None = None) -> torch.nn.Module:
        """Instantiate the network with the stored weights, in eval mode."""
        from geochem_sr.models import get_model

        net = get_model(self.network_name, **self.network_config)
        net.load_state_dict(self.state_dict)
        net.eval()
        if device is not None:
            net = net.to(device)
        return net

    @property
    def receptive_field(self) -> int:
        """Receptive field of the network in cells (used to size tile halos)."""
        from geochem_sr.models import get_model

        net = get_model(self.network_name, **self.network_config)
        return int(getattr(net, "receptive_field", 64))

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> dict[str, Any]:
        """All fields but the weights, as JSON-serializable values."""
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "state_dict"}
        meta["norm_stats"] = {k: [float(v[0]), float(v[1])] for k, v in self.norm_stats.items()}
        meta["format"] = FORMAT
        return json.loads(json.dumps(meta, default=_json_default))

    @property
    def digest(self) -> str:
        """SHA-256 of metadata and weights: the model's identity in provenance records."""
        return _digest(json.dumps(self.metadata(), sort_keys=True), self.state_dict)

    def shrinkage_of(self, element: str) -> float:
        """Do-no-harm factor of an element (1 when not fitted)."""
        return float(self.shrinkage.get(element, 1.0))

    # ------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (atomic: temporary file, then rename)."""
        import torch

        from geochem_sr import __version__

        if not self.package_version:
            self.package_version = __version__
        if not self.created:
            self.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        path = Path(path)
        meta_json = json.dumps(self.metadata(), sort_keys=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()}
        payload = {
            "format": FORMAT,
            "meta_json": meta_json,
            "state_dict": state,
            "digest": _digest(meta_json, state),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GeoSRModel:
        """Read a model file; refuse damaged or tampered files.

        Raises
        ------
        ModelFileError
            Unreadable file, unknown format, or digest mismatch.
        """
        import torch

        path = Path(path)
        if not path.exists():
            raise ModelFileError(f"model file '{path}': not found")
        payload = read_payload(path, FORMAT, "model file")
        meta_json, state = payload.get("meta_json"), payload.get("state_dict")
        if not isinstance(meta_json, str) or not isinstance(state, dict):
            raise ModelFileError(f"model file '{path}': metadata or weights missing")
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelFileError(f"model file '{path}': weights hold values that are not tensors")
        if _digest(meta_json, state) != payload.get("digest"):
            raise ModelFileError(
                f"model file '{path}': content does not match its digest "
                "(the file was modified or damaged); refusing to load it"
            )
        try:
            meta = json.loads(meta_json)
            meta.pop("format", None)
            meta["norm_stats"] = {
                k: (float(v[0]), float(v[1])) for k, v in meta["norm_stats"].items()
            }
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = set(meta) - names
            if unknown:
                raise ModelFileError(f"model file '{path}': unknown fields {sorted(unknown)}")
            return cls(state_dict=state, **meta)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"model file '{path}': metadata incomplete ({exc!r})") from exc

    # ------------------------------------------------------------------ checks
    def check_compatible(self, ds: xr.Dataset) -> None:
        """Raise :class:`ModelMismatchError` unless ``ds`` provides what the model needs.

        Checks elements, units, the variables behind each channel, and the geology
        vocabulary, before any computation starts.
        """
        if schema.LR not in ds.data_vars:
            raise ModelMismatchError("dataset: the model needs variable 'lr', which is missing")
        have = [str(e) for e in ds[schema.ELEMENT].values]
        missing = [e for e in self.elements if e not in have]
        if missing:
            raise ModelMismatchError(
                f"elements: the model was trained on {self.elements}; the dataset lacks "
                f"{missing} (it has {have})"
            )
        ds_units = schema.units_of(ds)
        bad_units = {e: (self.units.get(e), ds_units.get(e)) for e in self.elements
                     if self.units.get(e) and ds_units.get(e) and self.units[e] != ds_units[e]}
        if bad_units:
            raise ModelMismatchError(
                "units: expected (model, dataset) to agree, found "
                + ", ".join(f"{e}: {m} vs {d}" for e, (m, d) in bad_units.items())
            )
        from geochem_sr.channels import UNSEEN_PREFIX, variables_of

        needs = set(variables_of(self.channels))
        unseen = [c[len(UNSEEN_PREFIX):] for c in self.channels if c.startswith(UNSEEN_PREFIX)]
        absent = sorted(v for v in needs if v not in ds.data_vars and v != schema.GEOLOGY_EMBEDDING)
        if schema.GEOLOGY_EMBEDDING in needs and schema.GEOLOGY_EMBEDDING not in ds.data_vars \
                and schema.LITHOLOGY not in ds.data_vars:
            absent.append(schema.GEOLOGY_EMBEDDING)
        if absent:
            raise ModelMismatchError(
                f"channels: the model ({self.inputs}) needs variables {absent}, which the "
                f"dataset lacks (it has {sorted(ds.data_vars)})"
            )
        if unseen:
            seen = [str(c) for c in ds[schema.LR_VIEW][schema.COVARIATE].values]
            lacking = [c for c in unseen if c not in seen]
            if lacking:
                raise ModelMismatchError(
                    f"{schema.LR_VIEW}: the model needs covariates {lacking} as the sparse "
                    f"survey sees them, the dataset has {seen}; recompute with "
                    "geochem_sr.sparse_view.add_lr_view(ds)"
                )
        if schema.GEOLOGY_EMBEDDING in needs and schema.GEOLOGY_EMBEDDING in ds.data_vars:
            n_emb = sum(ch.startswith("embedding:") for ch in self.channels)
            if ds.sizes.get(schema.EMBEDDING) != n_emb:
                raise ModelMismatchError(
                    f"geology_embedding: the model expects {n_emb} dimensions, the dataset has "
                    f"{ds.sizes.get(schema.EMBEDDING)}"
                )
            ds_vocab = ds.attrs.get(schema.ATTR_GEOLOGY_VOCAB)
            if self.geology_vocabulary and ds_vocab and _vocab_vectors(ds_vocab) != _vocab_vectors(
                self.geology_vocabulary
            ):
                raise ModelMismatchError(
                    "geology_vocabulary: the dataset's geology embedding differs from the one "
                    "the model was trained with; re-embed with "
                    "ds.geosr.embed_geology(vocabulary=model vocabulary) or "
                    "gs.super_resolve(..., reembed=True)"
                )

    # ------------------------------------------------------------------ reports
    def summary(self) -> str:
        """A human-readable summary with the spatial validation report."""
        lines = [
            f"GeoSRModel {self.network_name} ({self.inputs}), {len(self.channels)} channels -> "
            f"{len(self.elements)} elements",
            f"  trained {len(self.history)} epochs; package {self.package_version}; "
            f"digest {self.digest[:12]}",
        ]
        per_el = self.validation.get("per_element") if self.validation else None
        if per_el:
            lines.append("  spatial validation on held-out blocks:")
            lines.append(f"  {'element':<8}{'rmse_lr':>10}{'rmse_pred':>11}{'gain':>8}"
                         f"{'shrink':>8}{'cov1':>7}{'cov2':>7}")
            for el in self.elements:
                r = per_el.get(el, {})
                lines.append(
                    f"  {el:<8}{r.get('rmse_lr', np.nan):>10.4f}{r.get('rmse_pred', np.nan):>11.4f}"
                    f"{r.get('gain', np.nan):>8.3f}{self.shrinkage_of(el):>8.2f}"
                    f"{r.get('coverage_1std', np.nan):>7.2f}{r.get('coverage_2std', np.nan):>7.2f}"
                )
        else:
            lines.append("  no spatial validation report (run ds.geosr.cross_validate)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"GeoSRModel(network={self.network_name!r}, inputs={self.inputs!r}, "
                f"elements={self.elements}, channels={len(self.channels)})")


def read_payload(path: Path, fmt: str, label: str, advice: str = "") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict file whose ``"format"`` must be ``fmt``.

    Shared by model files and training checkpoints: no code from the file is executed, and
    an unreadable file or another format raises :class:`ModelFileError` naming ``label``.
    """
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{label} '{path}': cannot be read ({exc}){advice}") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(f"{label} '{path}': expected format {fmt!r}, found {found!r}")
    return payload


def _vocab_vectors(vocab: str | Mapping[str, Any]) -> Any:
    v = json.loads(vocab) if isinstance(vocab, str) else dict(vocab)
    units = v.get("units", [])
    vecs = np.round(np.asarray(v.get("vectors", []), dtype=float), 5).tolist()
    return dict(zip(units, map(tuple, vecs), strict=False))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
