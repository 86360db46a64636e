"""Context prompting (method.md section 5): after every ViT layer, visual tokens refine the action-name text features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stclip_cli.model.adapter import feed_forward


class CrossAttention(nn.Module):
    """Multi-head cross-attention with bias-free q/k/v and a biased output, as the reference's prompt layer has.

    Hand-written because nn.MultiheadAttention ties the q/k/v and output biases together; SDPA does the attention.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> torch.Tensor:
        """query (G, C, E), memory (G, M, E), memory_pad (G, M) True where padded -> (G, C, E)."""
        g, c, e = query.shape
        m = memory.shape[1]
        q = self.q(query).view(g, c, self.heads, -1).transpose(1, 2)
        k = self.k(memory).view(g, m, self.heads, -1).transpose(1, 2)
        v = self.v(memory).view(g, m, self.heads, -1).transpose(1, 2)
        mask = None if memory_pad is None else ~memory_pad[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(g, c, e))


class PromptLayer(nn.Module):
    """F_bar = F_T + CrossAttn(LN(F_T), LN(F_I)); F_hat = F_bar + FFN(LN(F_bar)); returns F_T + rho * F_hat."""

    def __init__(self, dim: int, rho_init: float = 0.2) -> None:
        super().__init__()
        self.norm_visual = nn.LayerNorm(dim)
        self.norm_text = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, max(dim // 64, 1))
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = feed_forward(dim)
        self.rho = nn.Parameter(torch.full((dim,), float(rho_init)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor, visual_pad: torch.Tensor | None = None) -> torch.Tensor:
        """text (G, C, E), projected visual tokens (G, M, E) -> prompted text (G, C, E)."""
        bar = text + self.attn(self.norm_text(text), self.norm_visual(visual), visual_pad)
        hat = bar + self.ffn(self.norm_ffn(bar))
        return text + self.rho.to(text.dtype) * hat


class ContextPrompting(nn.Module):
    """One D->E projector and one prompt layer per ViT layer."""

    def __init__(self, layers: int, width: int, embed_dim: int, rho_init: float = 0.2) -> None:
        super().__init__()
        # projectors keep nn.Linear's default initialisation (uniform in +-1/sqrt(fan_in), biases too), as the reference's
        self.projectors = nn.ModuleList(nn.Linear(width, embed_dim) for _ in range(layers))
        self.layers = nn.ModuleList(PromptLayer(embed_dim, rho_init) for _ in range(layers))
        self.layers.apply(_init_weights)

    def forward(
        self, layer: int, text: torch.Tensor, tokens: torch.Tensor, tokens_pad: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Prompt ``text`` (G, C, E) with the layer's chosen visual tokens (G, M, D)."""
        return self.layers[layer](text, self.projectors[layer](tokens), tokens_pad)


def _init_weights(module: nn.Module) -> None:
    """Reference initialisation of the prompt layers: truncated normal (std 0.02) linears with zero bias; LayerNorms at 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
