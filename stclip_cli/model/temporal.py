"""Temporal context (method.md section 2): per patch position, self-attention over the T window frames, then the mean."""

from __future__ import annotations

import torch
from torch import nn


class TemporalContext(nn.Module):
    """Learnable temporal embedding + one pre-norm MHSA over time (residual, no FFN) + mean over valid frames."""

    def __init__(self, width: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.embedding = nn.Embedding(window, width)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, max(width // 64, 1), batch_first=True)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(K, T, N, D) patch tokens of K windows (``valid`` (K, T) marks real frames) -> (K, N, D) context tokens."""
        k, t, n, d = tokens.shape
        if t > self.window:
            raise ValueError(f"window of {t} frames exceeds the model's T={self.window}")
        x = tokens + self.embedding.weight[:t, None, :].to(tokens.dtype)
        x = x.permute(0, 2, 1, 3).reshape(k * n, t, d)
        pad = None if valid is None else (~valid).repeat_interleave(n, dim=0)
        h = self.norm(x)
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        x = x.reshape(k, n, t, d)
        if valid is None:
            return x.mean(dim=2)
        w = valid.to(x.dtype)[:, None, :, None]
        return (x * w).sum(dim=2) / w.sum(dim=2)
