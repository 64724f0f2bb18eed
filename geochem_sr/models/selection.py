"""Per element, one of several models or their mean: what ``train("auto")`` keeps.

:class:`Selection` holds the candidates that take part in at least one element (each any
registered network or per-cell regressor, ensembles included) and, per element, the
weight of each candidate: one weight of 1 is that candidate alone, equal weights their
mean, no weight the sparse map itself (no change). A model file stores it like any
network (``network_name "selection"``, the candidates' weights under ``members.<i>.``).

Examples
--------
>>> import torch
>>> net = Selection(4, 3, candidates=[{"name": "ridge", "config": {"scales": [1.0]}}],
...                 weights=[[1.0], [0.0], [1.0]])
>>> net.receptive_field, tuple(net(torch.zeros(1, 4, 8, 8)).shape)
(7, (1, 3, 8, 8))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from geochem_sr.errors import ParameterError
from geochem_sr.models.layers import SRNetwork

__all__ = ["Selection"]


class Selection(SRNetwork):
    """Each element's residual from the candidate chosen for it.

    Parameters
    ----------
    in_channels, out_channels : int
        As for every network; every candidate takes all input channels and predicts all
        elements (only those it has a weight for are used).
    candidates : sequence of mapping
        ``{"name": registered name, "config": constructor arguments}`` per candidate.
    weights : sequence of sequence of float
        Per element, one weight >= 0 per candidate, summing to 1 (a mean of candidates)
        or to 0 (the sparse map: no change).
    """

    model_name: ClassVar[str] = "selection"

    def __init__(self, in_channels: int, out_channels: int,
                 candidates: Sequence[Mapping[str, Any]] = (),
                 weights: Sequence[Sequence[float]] = ()) -> None:
        super().__init__()
        from geochem_sr.models.registry import get_model

        cands = [{"name": str(c["name"]), "config": {k: v for k, v in dict(c.get(
            "config") or {}).items() if k not in ("in_channels", "out_channels")}}
                 for c in candidates]
        rows = [[float(v) for v in row] for row in weights]
        ok = len(rows) == int(out_channels) and all(
            len(r) == len(cands) and all(math.isfinite(v) and v >= 0 for v in r)
            and (abs(sum(r) - 1) < 1e-6 or sum(r) == 0) for r in rows)
        if not ok:
            raise ParameterError(
                f"weights: expected per element ({out_channels}) one weight >= 0 per "
                f"candidate ({len(cands)}), summing to 1 or 0, found {list(weights)}")
        if any(c["name"] == self.model_name for c in cands):
            raise ParameterError("candidates: a selection of selections is not supported")
        self._set_config(in_channels, out_channels, candidates=cands, weights=rows)
        self.members = nn.ModuleList(
            get_model(c["name"], in_channels, out_channels, **c["config"]) for c in cands)
        multiple = 1
        for m in self.members:
            multiple = math.lcm(multiple, int(getattr(m, "size_multiple", 1)))
        self.size_multiple = multiple

    @property
    def receptive_field(self) -> int:
        """The widest candidate's receptive field (1 when every element is the sparse map)."""
        return max([int(getattr(m, "receptive_field", 64)) for m in self.members] or [1])

    @property
    def tile_reach(self) -> int:
        """The farthest candidate's reach from a tile on the lattice of every candidate."""
        return max((int(m.tile_reach) for m in self.members), default=0)

    def _combine(self, x: torch.Tensor, spread: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted mean per element and, with ``spread``, the standard deviation of
        the mixture of the candidates' members (0 for a candidate without members)."""
        n, _, h, w = x.shape
        weights = torch.tensor(self.config["weights"], dtype=torch.float32, device=x.device)
        mean = x.new_zeros((n, weights.shape[0], h, w), dtype=torch.float32)
        second = torch.zeros_like(mean)
        for k, member in enumerate(self.members):
            wk = weights[:, k].view(1, -1, 1, 1)
            if not bool((wk > 0).any()):
                continue
            if spread and hasattr(member, "mean_and_spread"):
                m, s = member.mean_and_spread(x)
                m, s = m.float(), s.float()
            else:
                m = member(x).float()
                s = torch.zeros_like(m)
            mean = mean + wk * m
            second = second + wk * (s * s + m * m)
        var = (second - mean * mean).clamp_min_(0.0)
        return mean, var.sqrt_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each element's residual from its candidate (0 for the sparse map)."""
        self._check_input(x)
        return self._combine(x, False)[0]

    def mean_and_spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and, per element, its candidate's members' spread (0 for a
        candidate that is not an ensemble, and for the sparse map)."""
        self._check_input(x)
        return self._combine(x, True)
