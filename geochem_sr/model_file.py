"""A trained model and all that applying it needs, in one file read without unpickling code.

The file is a ``torch.save`` of a plain dict ``{"format", "meta_json", "state_dict",
"digest", "checksum"}``: tensors, strings and numbers only, so :func:`torch.load` with
``weights_only=True`` reads it and no code from the file is ever executed.

Two hashes, two purposes:

* ``checksum`` (file integrity): SHA-256 of the whole payload, i.e. the format, all the
  metadata (the run record included) and every tensor's bytes. A file whose content does
  not match it (edited, truncated, damaged) is refused with :class:`ModelFileError`. It
  is no signature: anyone can recompute it, so :meth:`GeoSRModel.load` also checks every
  value (:mod:`geochem_sr.model_checks`).
* ``digest`` (content identity, :attr:`GeoSRModel.digest`): SHA-256 of what determines the
  predictions only (:data:`IDENTITY_FIELDS`, :data:`PREDICTION_EXTRA` and the weights),
  not of the run record (history and its timings, ``created``, the validation report,
  the package version, the rest of ``extra``). Two trainings with the same seed give the
  same digest, so a retrained identical model resumes a prediction store.

Files of the previous format ``geochem_sr.model/1`` (one whole-payload hash, named
``digest``) are still read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geochem_sr import schema
from geochem_sr.errors import ModelFileError, ModelMismatchError
from geochem_sr.model_checks import check_folder, check_model

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import xarray as xr

__all__ = ["GeoSRModel", "FORMAT", "IDENTITY_FIELDS", "PREDICTION_EXTRA"]

FORMAT = "geochem_sr.model/2"
#: The previous format, still read: its ``digest`` hashes the whole payload.
FORMAT_1 = "geochem_sr.model/1"
#: Fields that determine a model's predictions: with the weights, its :attr:`digest`.
IDENTITY_FIELDS = ("network_name", "network_config", "inputs", "channels", "elements",
                   "units", "norm_stats", "geology_vocabulary", "patch_size", "shrinkage",
                   "std_scale", "aoa")
#: Keys of ``extra`` that change predictions (inference context, uncertainty floor).
PREDICTION_EXTRA = ("context", "std_floor")


def _hash(texts: Iterable[str], state: Mapping[str, Any]) -> str:
    """SHA-256 of some texts then of every tensor (name, dtype, shape, bytes), by name."""
    import torch

    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _checksum(fmt: str, meta_json: str, digest: str, state: Mapping[str, Any]) -> str:
    """The file checksum: every entry of the payload."""
    return _hash([fmt, "\0", meta_json, "\0", digest, "\0"], state)


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
        Anything else (seed, epochs, training region, ...); ``extra["context"]`` and
        ``extra["std_floor"]`` change predictions (:data:`PREDICTION_EXTRA`).
    package_version : str
        Version of geochem_sr that made the model.
    created : str
        When the model was first saved (ISO 8601, UTC).

    Notes
    -----
    :attr:`digest`, the model's identity, covers the weights, :data:`IDENTITY_FIELDS` and
    :data:`PREDICTION_EXTRA`; the rest (``validation``, ``history``, ``package_version``,
    ``created``, the other keys of ``extra``) is the run record, which only the file
    checksum covers (see the module notes).
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

    def identity(self) -> dict[str, Any]:
        """What determines the predictions, but the weights: the content behind :attr:`digest`.

        Returns
        -------
        dict
            The :data:`IDENTITY_FIELDS` of :meth:`metadata` and ``extra`` reduced to its
            :data:`PREDICTION_EXTRA` keys; not the run record (``history``, ``created``,
            ``validation``, ``package_version``, the rest of ``extra``).
        """
        meta = self.metadata()
        out = {k: meta[k] for k in IDENTITY_FIELDS}
        out["extra"] = {k: meta["extra"][k] for k in PREDICTION_EXTRA if k in meta["extra"]}
        return out

    @property
    def digest(self) -> str:
        """Content identity: SHA-256 of :meth:`identity` and of the weights.

        Equal for two models that predict the same (two trainings with the same seed, a
        model and its copy with another history), different when a weight, a channel, the
        shrinkage, ... differs. Inference records it as the model's identity in provenance
        and compares it to resume a prediction store. Damage to a file is detected by the
        file checksum instead (see the module notes).
        """
        return _hash([json.dumps(self.identity(), sort_keys=True)], self.state_dict)

    def shrinkage_of(self, element: str) -> float:
        """Do-no-harm factor of an element (1 when not fitted)."""
        return float(self.shrinkage.get(element, 1.0))

    def check(self, where: str = "model") -> None:
        """Check every value that changes a prediction, and the weights against the network.

        Called by :meth:`load` and, before writing, by :meth:`save`; the rules are those of
        :mod:`geochem_sr.model_checks` (shrinkage in [0, 1], std scale > 0, finite
        normalisation statistics for exactly the channels, weights that fit
        ``network_config``, ...).

        Parameters
        ----------
        where : str, default "model"
            What the messages start with (the file, for a file).

        Raises
        ------
        ModelFileError
            Naming ``where``, the field, the element or channel, what was expected and what
            was found.
        """
        check_model(self, where)

    # ------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike) -> Path:
        """Check the model, then write the model file atomically.

        The file is written to a temporary file next to ``path``, flushed to disk, then
        renamed onto ``path``: a failure leaves no temporary file and ``path`` as it was.

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        ModelFileError
            A wrong value (:meth:`check`), a folder of ``path`` that is missing or a file,
            or a write that failed (the message names the path and the reason).
        """
        import torch

        from geochem_sr import __version__

        path = Path(path)
        self.check(f"model (not saved to '{path}')")
        check_folder(path)
        if not self.package_version:
            self.package_version = __version__
        if not self.created:
            self.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        meta_json = json.dumps(self.metadata(), sort_keys=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()}
        digest = self.digest
        payload = {"format": FORMAT, "meta_json": meta_json, "state_dict": state,
                   "digest": digest, "checksum": _checksum(FORMAT, meta_json, digest, state)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError | RuntimeError):
                raise ModelFileError(f"model file '{path}': cannot be written ({exc})") from exc
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GeoSRModel:
        """Read a model file; refuse damaged, tampered or inconsistent files.

        Raises
        ------
        ModelFileError
            Unreadable file, unknown format, content that does not match the file checksum,
            a wrong value or weights that do not fit the network (:meth:`check`).
        """
        import torch

        path = Path(path)
        where = f"model file '{path}'"
        if not path.exists():
            raise ModelFileError(f"{where}: not found")
        payload = read_payload(path, (FORMAT, FORMAT_1), "model file")
        fmt, meta_json = payload["format"], payload.get("meta_json")
        state, digest = payload.get("state_dict"), payload.get("digest")
        if not isinstance(meta_json, str) or not isinstance(state, dict):
            raise ModelFileError(f"{where}: metadata or weights missing")
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelFileError(f"{where}: weights hold values that are not tensors")
        if fmt == FORMAT_1:  # its "digest" was the checksum
            intact = _hash([meta_json], state) == digest
        else:
            intact = isinstance(digest, str) and \
                _checksum(fmt, meta_json, digest, state) == payload.get("checksum")
        if not intact:
            raise ModelFileError(
                f"{where}: content does not match its checksum (the file was modified or "
                "damaged); refusing to load it"
            )
        try:
            meta = json.loads(meta_json)
            meta.pop("format", None)
            unknown = set(meta) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ModelFileError(f"{where}: unknown fields {sorted(unknown)}")
            model = cls(state_dict=state, **meta)
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"{where}: metadata incomplete ({exc!r})") from exc
        model.check(where)
        model.norm_stats = {k: (float(v[0]), float(v[1])) for k, v in model.norm_stats.items()}
        if fmt == FORMAT and model.digest != digest:
            raise ModelFileError(
                f"{where}: its digest {digest[:12]}... is not that of its content "
                f"({model.digest[:12]}...); written by another version of geochem_sr?"
            )
        return model

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


def read_payload(path: Path, fmt: str | tuple[str, ...], label: str,
                 advice: str = "") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a dict file whose ``"format"`` must be ``fmt``.

    Shared by model files and training checkpoints: no code from the file is executed, and
    an unreadable file or another format raises :class:`ModelFileError` naming ``label``.
    ``fmt`` may be a tuple of accepted formats, the current one first.
    """
    import torch

    formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{label} '{path}': cannot be read ({exc}){advice}") from exc
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        older = f" (or {', '.join(map(repr, formats[1:]))})" if len(formats) > 1 else ""
        raise ModelFileError(
            f"{label} '{path}': expected format {formats[0]!r}{older}, found {found!r}")
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
