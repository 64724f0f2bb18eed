"""Per element, one of several models: what ``train(model="auto")`` keeps.

:class:`Selection` holds the candidates that won at least one element (each any registered
network or per-cell regressor, ensembles included) and, per element, which of them
predicts it; an element whose best candidate was the sparse map itself predicts no
change. A model file stores it like any network (``network_name "selection"``, the
candidates' weights under ``members.<i>.``).

Examples
--------
>>> import torch
>>> net = Selection(4, 3, candidates=[{"name": "ridge", "config": {"scales": [1.0]}}],
...                 choice=[0, -1, 0])
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

__all__ = ["Selection", "SPARSE"]

#: The ``choice`` of an element returned as the sparse map (no change).
SPARSE = -1


class Selection(SRNetwork):
    """Each element's residual from the candidate chosen for it.

    Parameters
    ----------
    in_channels, out_channels : int
        As for every network; every candidate takes all input channels and predicts all
        elements (only its chosen ones are used).
    candidates : sequence of mapping
        ``{"name": registered name, "config": constructor arguments}`` per candidate.
    choice : sequence of int
        Per element, the index of its candidate, or :data:`SPARSE` (-1): no change.
    """

    model_name: ClassVar[str] = "selection"

    def __init__(self, in_channels: int, out_channels: int,
                 candidates: Sequence[Mapping[str, Any]] = (),
                 choice: Sequence[int] = ()) -> None:
        super().__init__()
        from geochem_sr.models.registry import get_model

        cands = [{"name": str(c["name"]), "config": {k: v for k, v in dict(c.get(
            "config") or {}).items() if k not in ("in_channels", "out_channels")}}
                 for c in candidates]
        picks = [int(k) for k in choice]
        if len(picks) != int(out_channels) or any(k < SPARSE or k >= len(cands)
                                                  for k in picks):
            raise ParameterError(
                f"choice: expected one candidate index in [-1, {len(cands) - 1}] per element "
                f"({out_channels}), found {list(choice)}")
        if any(c["name"] == self.model_name for c in cands):
            raise ParameterError("candidates: a selection of selections is not supported")
        self._set_config(in_channels, out_channels, candidates=cands, choice=picks)
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

    def _combine(self, x: torch.Tensor, spread: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        e = self.config["out_channels"]
        mean = x.new_zeros((n, e, h, w), dtype=torch.float32)
        std = x.new_zeros((n, e, h, w), dtype=torch.float32)
        for k, member in enumerate(self.members):
            rows = [i for i, c in enumerate(self.config["choice"]) if c == k]
            if not rows:
                continue
            if spread and hasattr(member, "mean_and_spread"):
                m, s = member.mean_and_spread(x)
                std[:, rows] = s[:, rows].float()
            else:
                m = member(x)
            mean[:, rows] = m[:, rows].float()
        return mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each element's residual from its candidate (0 for the sparse map)."""
        self._check_input(x)
        return self._combine(x, False)[0]

    def mean_and_spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction and, per element, its candidate's members' spread (0 for a
        candidate that is not an ensemble, and for the sparse map)."""
        self._check_input(x)
        return self._combine(x, True)
