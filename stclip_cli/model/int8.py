"""The int8 CPU path (``--int8``): dynamic int8 quantization of every linear layer of the image side.

ST-CLIP's CPU time is matrix products (about 90% on ViT-B/16): the ViT's attention projections and FFNs for the
keyframe, each person crop and the interaction sequence, the temporal block and the prompt layers. torch's dynamic
quantization runs nn.Linear as int8 matrix products (fbgemm, VNNI where the CPU has it) with per-batch activation
scales. It cannot reach nn.MultiheadAttention's fused input projection (a bare parameter, a third of the ViT's
matrix work), so those attentions are first rebuilt as ``SelfAttention`` with real nn.Linear projections: the same
computation (checked in the tests to 1e-5), now quantizable. The text encoder runs once per action list and stays
float. Inference only; the accuracy cost is measured in benchmarks/speed.py.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from stclip_cli.model.skip_init import skipped_random_init


class SelfAttention(nn.Module):
    """nn.MultiheadAttention's self-attention with its projections as nn.Linear modules (``qkv`` and ``out_proj``).

    Takes the same call as nn.MultiheadAttention (query, key, value, key_padding_mask, need_weights, attn_mask,
    average_attn_weights) for self-attention (query is key is value), as open_clip's blocks and stclip call it.
    Hand-written because torch has no quantizable form of nn.MultiheadAttention for dynamic quantization.
    """

    def __init__(self, attention: nn.MultiheadAttention, copy: bool = True) -> None:
        super().__init__()
        if not attention._qkv_same_embed_dim or attention.in_proj_bias is None:
            raise ValueError("only nn.MultiheadAttention with one in_proj and biases can be converted")
        dim = attention.embed_dim
        self.num_heads, self.batch_first = attention.num_heads, attention.batch_first
        with skipped_random_init():  # every weight is copied from ``attention`` next
            self.qkv = nn.Linear(dim, 3 * dim)
            self.out_proj = nn.Linear(dim, dim, bias=attention.out_proj.bias is not None)
        if not copy:  # the caller sets every weight (the int8 cache)
            return
        with torch.no_grad():
            self.qkv.weight.copy_(attention.in_proj_weight)
            self.qkv.bias.copy_(attention.in_proj_bias)
            self.out_proj.weight.copy_(attention.out_proj.weight)
            if attention.out_proj.bias is not None:
                self.out_proj.bias.copy_(attention.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of ``query`` (B, S, D), or (S, B, D) when not batch-first; returns (output, weights)."""
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ValueError("SelfAttention computes self-attention only (query is key is value)")
        x = query if self.batch_first else query.transpose(0, 1)
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        mask = _additive_mask(attn_mask, key_padding_mask, b, s, x.dtype)
        if need_weights:
            scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5)
            weights = (scores if mask is None else scores + mask).softmax(dim=-1)
            out = weights @ v
            returned = weights.mean(dim=1) if average_attn_weights else weights
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
            returned = None
        out = self.out_proj(out.transpose(1, 2).reshape(b, s, d))
        return (out if self.batch_first else out.transpose(0, 1)), returned


def _additive_mask(attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, batch: int, length: int,
                   dtype: torch.dtype) -> torch.Tensor | None:
    """One additive (B, 1, S, S)-broadcastable mask from nn.MultiheadAttention's two (True = not attended)."""
    masks = []
    if attn_mask is not None:
        masks.append(torch.zeros_like(attn_mask, dtype=dtype).masked_fill(attn_mask, float("-inf"))
                     if attn_mask.dtype == torch.bool else attn_mask.to(dtype))
    if key_padding_mask is not None:
        pad = torch.zeros(batch, 1, 1, length, dtype=dtype, device=key_padding_mask.device)
        masks.append(pad.masked_fill(key_padding_mask[:, None, None, :], float("-inf")))
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else masks[0] + masks[1]


def split_attention(module: nn.Module, copy: bool = True) -> int:
    """Replace every nn.MultiheadAttention under ``module`` by an equal ``SelfAttention`` (``copy`` False: with its
    weights left for the caller to set); returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.MultiheadAttention):
            setattr(module, name, SelfAttention(child, copy))
            count += 1
        else:
            count += split_attention(child, copy)
    return count


def dynamic_int8_linear(linear: nn.Linear) -> nn.Module:
    """``linear`` as torch's dynamic int8 Linear: torch's own weight observer and quantization, the same module
    ``quantize_dynamic`` makes. Hand-made because ``quantize_dynamic`` also packs an empty full-size weight for each
    layer before the real one (a third of its time on ViT-B/16, and memory touched for nothing)."""
    from torch.ao.quantization.qconfig import default_dynamic_qconfig

    weight = linear.weight.detach().float()
    observer = default_dynamic_qconfig.weight()
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    qweight = torch.quantize_per_tensor(weight, float(scale), int(zero_point), observer.dtype)
    return packed_int8_linear(qweight, None if linear.bias is None else linear.bias.detach().float())


def packed_int8_linear(qweight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """torch's dynamic int8 Linear holding ``qweight`` (a per-tensor qint8 (out, in) tensor) and ``bias``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    module = DynamicLinear(1, 1, bias_=bias is not None, dtype=torch.qint8)  # packs a 1x1 placeholder only
    module.out_features, module.in_features = qweight.shape
    module.set_weight_bias(qweight, bias)
    return module


def int8_parts(model: nn.Module) -> list[nn.Module]:
    """The parts ``quantize_int8`` quantizes: the image tower and the ST-CLIP heads (everything but CLIP's text side)."""
    return [model.clip.visual, *(m for name, m in model.named_children() if name != "clip")]


def _quantize_linears(module: nn.Module) -> None:
    """Replace every nn.Linear under ``module`` (exactly that type, as ``quantize_dynamic({nn.Linear})`` does)."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, dynamic_int8_linear(child))
        else:
            _quantize_linears(child)


def quantize_int8(model: nn.Module) -> nn.Module:
    """The int8 CPU form of an inference model (in place): image side and ST-CLIP heads in dynamic int8, the text
    encoder (run once per action list) left as it is. Call ``encode_text`` for the actions before or after: the
    text tower is untouched."""
    from stclip_cli.model.lora import fold_adapters

    fold_adapters(model)  # a training-form model's LoRA adapters become plain (quantizable) linear layers
    for part in int8_parts(model):
        split_attention(part)
        with torch.no_grad(), warnings.catch_warnings():  # torch's deprecation notices: not the user's concern
            warnings.simplefilter("ignore")
            _quantize_linears(part)
    return model


__all__ = ["SelfAttention", "dynamic_int8_linear", "int8_parts", "packed_int8_linear", "quantize_int8", "split_attention"]
