"""Person-token adapter (method.md section 1): P + FFN(LN(P)), FFN = Linear(D,4D) -> QuickGELU -> Linear(4D,D)."""

from __future__ import annotations

import torch
from open_clip.transformer import QuickGELU
from torch import nn


def feed_forward(width: int) -> nn.Sequential:
    """The CLIP-style 4x MLP with QuickGELU used by the adapter and the prompt layers."""
    return nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))


class PersonAdapter(nn.Module):
    """Residual pre-norm FFN that adapts CLIP's pooled crop feature into a person token."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.ffn = feed_forward(width)

    def forward(self, persons: torch.Tensor) -> torch.Tensor:
        """(P, D) -> (P, D)."""
        return persons + self.ffn(self.norm(persons))
