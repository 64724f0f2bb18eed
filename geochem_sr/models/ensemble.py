"""An ensemble: the mean of ``n`` networks of one kind, trained with different seeds.

On the synthetic region a single network's gain on held-out blocks varies with its seed
by several percent of RMSE (the dense map is a noisy target and the training area small,
so each network also fits some noise of its own); averaging three networks kept the
signal they share: test-block gains of single members +1.9, +1.3 and -4.7 % became +2.6 %
for their mean (``benchmarks/results/trust.md``). :func:`geochem_sr.training.train` builds
one with ``ensemble=n``; a model file stores it like any network (``network_name
"ensemble"``, the members' weights under ``members.<i>.``).

Examples
--------
>>> net = Ensemble(19, 10, member="srcnn", n=2)
>>> net.config["member"], len(net.members), net.receptive_field == net.members[0].receptive_field
('srcnn', 2, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import SRNetwork

__all__ = ["Ensemble"]


class Ensemble(SRNetwork):
    """Mean of ``n`` member networks.

    Parameters
    ----------
    in_channels, out_channels : int
        As for every network (:class:`~geochem_sr.models.layers.SRNetwork`).
    member : str, default "multilevel_unet"
        Registered network name of the members (not ``"ensemble"``).
    n : int, default 3
        Number of members.
    member_config : mapping, optional
        Further constructor arguments of every member (e.g. ``{"base_channels": 16}``).
    """

    model_name: ClassVar[str] = "ensemble"

    def __init__(self, in_channels: int, out_channels: int, member: str = "multilevel_unet",
                 n: int = 3, member_config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from geochem_sr.models.registry import get_model

        if member == self.model_name:
            raise ParameterError("member: an ensemble of ensembles is not supported")
        cfg = dict(member_config or {})
        cfg.pop("in_channels", None)
        cfg.pop("out_channels", None)
        self._set_config(in_channels, out_channels, positive=("n",),
                         member=str(member), n=n, member_config=cfg)
        self.members = nn.ModuleList(
            get_model(member, in_channels, out_channels, **cfg) for _ in range(int(n)))
        first = self.members[0]
        self.size_multiple = int(getattr(first, "size_multiple", 1))

    @property
    def receptive_field(self) -> int:
        """The members' receptive field."""
        return int(getattr(self.members[0], "receptive_field", 64))

    @property
    def tile_reach(self) -> int:
        """The members' reach from a lattice-aligned tile."""
        return int(self.members[0].tile_reach)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the members' outputs."""
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)

    def mean_and_spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' mean, summed as :meth:`forward` sums it (the same values), and
        their standard deviation (ddof 0), from deviations (no cancellation in float32)."""
        outs = [m(x) for m in self.members]
        total = outs[0]
        for o in outs[1:]:
            total = total + o
        mean = total / len(outs)
        sq = torch.zeros_like(mean)
        for o in outs:
            sq.addcmul_(o - mean, o - mean)
        return mean, (sq / len(outs)).sqrt_()
