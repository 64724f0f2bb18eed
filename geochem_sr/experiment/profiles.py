"""What the experiment runs: the networks, input sets and baselines of its rows, the profiles.

:data:`PROFILES` holds the three settings (``smoke``, ``cpu``, ``gpu``); :class:`Profile`
one of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from geochem_sr.errors import ParameterError
from geochem_sr.training import TrainConfig

__all__ = [
    "NETWORKS",
    "NETWORK_LABELS",
    "INPUT_SETS",
    "TOOLKIT_INPUTS",
    "TOOLKIT_LABEL",
    "BASELINES",
    "BASELINE_LABELS",
    "BASELINE_INPUTS",
    "TABLE_COLUMNS",
    "Log",
    "paper_training",
    "toolkit_margin",
    "Profile",
    "PROFILES",
    "get_profile",
    "row_key",
]

#: The networks of Table 6, in the paper's order.
NETWORKS: tuple[str, ...] = ("srcnn", "vdsr", "unet", "multilevel_unet")
NETWORK_LABELS: dict[str, str] = {
    "srcnn": "SRCNN", "vdsr": "VDSR", "unet": "U-Net", "multilevel_unet": "Multi-level U-Net",
}
#: The input sets of Table 6, in the paper's order (all inputs first).
INPUT_SETS: tuple[str, ...] = ("geochem+terrain+geology", "geochem+terrain", "geochem")
#: Input set of the toolkit-default row (every group the survey provides).
TOOLKIT_INPUTS = "auto"
TOOLKIT_LABEL = "Multi-level U-Net base 16, all input groups, ensemble (toolkit recipe)"
#: What a geochemist would use instead, in table order.
BASELINES: tuple[str, ...] = ("sparse", "idw", "kriging", "retuned", "regression_kriging",
                               "regression_kriging_all")
BASELINE_LABELS: dict[str, str] = {
    "sparse": "Sparse map as is (lr)",
    "idw": "IDW of sparse samples",
    "kriging": "Ordinary kriging of sparse samples",
    "retuned": "Re-tuned interpolation (settings fitted to the dense map off the test blocks)",
    "regression_kriging": "Regression kriging (terrain + geology)",
    "regression_kriging_all": "Regression kriging (terrain + geology + fault and contact "
                              "distances)",
}
#: Input set each baseline uses (the Geochem/Topo/Geology flags of the table).
BASELINE_INPUTS = {"sparse": "geochem", "idw": "geochem", "kriging": "geochem",
                   "retuned": "geochem",
                   "regression_kriging": "geochem+terrain+geology",
                   "regression_kriging_all": "geochem+terrain+geology"}
#: Score columns of the main table (averages over elements), in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "psnr_max", "psnr_avg", "ssim_max", "ssim_avg", "rmse_log10", "iou95",
)

#: Progress messages (one line each).
Log = Callable[[str], None]


def paper_training(**settings: Any) -> TrainConfig:
    """The training settings of the paper's rows (Table 5), ``settings`` replacing some.

    Batch 32, Adam learning rate 1e-3 halved every 40 epochs, 32 x 32 patches with a step of
    16 cells, the toolkit's loss (``"mse"`` on the raw log10 residual), no progress bar.
    """
    base = {"batch_size": 32, "learning_rate": 1e-3, "lr_step": 40, "lr_gamma": 0.5,
            "patch_size": 32, "stride": 16, "loss": "mse", "target_scale": None,
            "progress": False}
    return TrainConfig(**{**base, **settings})


@dataclasses.dataclass(frozen=True)
class Profile:
    """Settings of one experiment profile (see :data:`PROFILES`).

    Attributes
    ----------
    name : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``.
    size_km : (float, float)
        Width and height of the synthetic region.
    training : TrainConfig
        Training settings of the paper's rows (:func:`paper_training`): ``epochs``,
        ``patience`` (None: all epochs), ``batch_size``, ``learning_rate`` (Table 5: 1e-3),
        ``lr_step``, ``loss``, ``target_scale``, and the ``patch_size`` and ``stride`` of the
        patches of the shared split. The seed and the network arguments are set per row.
    block_cells : int, optional
        Side of the spatial blocks of the split, in cells; default
        :func:`geochem_sr.sampling.default_block_size` for the gap.
    gap : int, optional
        Cells between blocks of different roles; default the dense map's reach
        (:func:`geochem_sr.sampling.leakage_gap`), so that no training target uses a
        held-out dense sample.
    fractions : (float, float, float)
        Shares of train, validation and test cells.
    toolkit_row : bool
        Also train the toolkit's default: the multi-level U-Net on every input group the
        survey provides (``inputs="auto"``: + fault and contact distances + the ``unseen``
        channels) with the toolkit's learning rate, on the same split.
    toolkit_ensemble : int
        Networks averaged in the toolkit row (``train(ensemble=...)``), and members of the
        per-cell methods' ensembles.
    toolkit_kwargs : mapping
        Network arguments of the toolkit row (the README's recipe: base width 16); it is
        trained with the toolkit's default margin of input context
        (:func:`toolkit_margin`), so it predicts whole tiles.
    network_kwargs : mapping
        Network name -> extra constructor arguments (empty: the paper's networks).
    cv_folds : int
        Folds of the spatial cross-validation of the multi-level U-Net (0: not run).
    cross_fit_folds : int
        Folds of the out-of-fold predictions that calibrate and choose the per-cell
        methods (:mod:`geochem_sr.trust.evidence`; the toolkit's default is 5).
    k : int
        Neighbours of the IDW and kriging baselines.
    description : str
        One line for the results file.
    """

    name: str
    size_km: tuple[float, float]
    training: TrainConfig
    block_cells: int | None = None
    gap: int | None = None
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    toolkit_row: bool = True
    toolkit_ensemble: int = 3
    toolkit_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"base_channels": 16})
    network_kwargs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    cv_folds: int = 0
    cross_fit_folds: int = 5
    k: int = 16
    description: str = ""

    def train_config(self, network: str, seed: int, *, toolkit: bool = False) -> TrainConfig:
        """The settings of one row's training: :attr:`training` for ``network`` and ``seed``.

        ``toolkit=True``: the toolkit row, with the toolkit's default learning rate and an
        ensemble of :attr:`toolkit_ensemble` networks.
        """
        config = dataclasses.replace(
            self.training, seed=seed, network_kwargs=dict(self.network_kwargs.get(network, {})))
        if toolkit:
            config = dataclasses.replace(config, learning_rate=TrainConfig().learning_rate,
                                         ensemble=self.toolkit_ensemble,
                                         network_kwargs=dict(self.toolkit_kwargs),
                                         margin=toolkit_margin(self))
        return config

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings, flat (the layout of the results files)."""
        t = self.training
        return {
            "name": self.name, "size_km": list(self.size_km), "epochs": t.epochs,
            "patience": t.patience, "batch_size": t.batch_size, "patch_size": t.patch_size,
            "stride": t.stride, "block_cells": self.block_cells, "gap": self.gap,
            "fractions": list(self.fractions), "lr": t.learning_rate, "lr_step": t.lr_step,
            "toolkit_row": self.toolkit_row, "toolkit_ensemble": self.toolkit_ensemble,
            "toolkit_kwargs": dict(self.toolkit_kwargs), "toolkit_margin": toolkit_margin(self),
            "loss": t.loss, "target_scale": t.target_scale,
            "model_kwargs": {k: dict(v) for k, v in self.network_kwargs.items()},
            "cv_folds": self.cv_folds, "cross_fit_folds": self.cross_fit_folds, "k": self.k,
            "description": self.description,
        }


_SMOKE_NETS = {
    "srcnn": {"features": 8, "kernel_sizes": [5, 1, 3]},
    "vdsr": {"depth": 3, "features": 8},
    "unet": {"base_channels": 4, "depth": 2},
    "multilevel_unet": {"base_channels": 4},
}

#: The three profiles.
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", size_km=(3.2, 3.2),
        training=paper_training(epochs=1, patience=None, patch_size=16, stride=4),
        block_cells=20, gap=0, network_kwargs=_SMOKE_NETS,
        toolkit_kwargs={"base_channels": 4}, toolkit_ensemble=1, cross_fit_folds=2,
        description="layout and determinism check only: tiny region, 1 epoch, shrunken "
                    "networks; the numbers mean nothing",
    ),
    "cpu": Profile(
        name="cpu", size_km=(19.2, 19.2), training=paper_training(epochs=40, patience=10),
        description="the paper's networks at full size on a 19.2 km region (384 x 384 cells "
                    "of 50 m), at most 40 epochs with early stopping (patience 10) instead "
                    "of 1000; sized for under an hour on 2 otherwise idle CPU cores (a "
                    "12.8 km region with 30 epochs took 17 min)",
    ),
    "gpu": Profile(
        name="gpu", size_km=(25.6, 25.6), training=paper_training(epochs=1000, patience=None),
        cv_folds=5,
        description="the paper's settings (Table 5): 1000 epochs, batch 32, Adam 1e-3 halved "
                    "every 40 epochs, 32 x 32 patches, on a 25.6 km region; weights of the "
                    "best validation epoch; plus 5-fold spatial cross-validation of the "
                    "multi-level U-Net",
    ),
}


def toolkit_margin(profile: Profile) -> int:
    """The margin of input context of the toolkit row: :func:`geochem_sr.training.default_margin`
    of the multi-level U-Net with :attr:`Profile.toolkit_kwargs`."""
    from geochem_sr.training import default_margin

    return default_margin("multilevel_unet", profile.toolkit_kwargs,
                          profile.training.patch_size)


def get_profile(profile: str | Profile) -> Profile:
    """The :class:`Profile` named ``profile`` (or ``profile`` itself).

    Raises
    ------
    ParameterError
        Unknown profile name.
    """
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ParameterError(f"profile: expected one of {sorted(PROFILES)}, found {profile!r}")
    return PROFILES[profile]


def row_key(network: str, inputs: str) -> str:
    """Key of the row of ``network`` trained on the input set ``inputs`` (cache, figure)."""
    return f"{network}__{inputs.replace('+', '-')}"
