"""LoRA on the visual FFNs (method.md section 3): peft's adapters for training, merged weights for inference.

Training injects peft's LoRA (rank r, alpha/r scaling, B = 0 at start) into ``c_fc``/``c_proj`` of every visual
layer. A trained model needs no adapter at inference: W + s * B A is the same linear map, so checkpoints' LoRA
factors are folded into the base weights when loaded for inference. That drops peft (and the transformers import
it pulls in, seconds of start-up) and an extra pair of matmuls per layer from every forward.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from open_clip.transformer import VisionTransformer
from torch import nn

# checkpoint names of the LoRA factors (peft's): <layer>.lora_A.default.weight (r, in), <layer>.lora_B... (out, r)
LORA_NAME = re.compile(r"(?P<layer>.+)\.lora_(?P<which>[AB])\.default\.weight")


def add_lora(visual: VisionTransformer, rank: int, alpha: float = 1.0) -> None:
    """Rank-r LoRA on both FFN linears (c_fc, c_proj) of every visual layer; B starts at zero so nothing changes."""
    from peft import LoraConfig, inject_adapter_in_model  # training only: peft imports transformers

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=["c_fc", "c_proj"], bias="none")
    inject_adapter_in_model(config, visual.transformer)


def merge_lora(model: nn.Module, tensors: Mapping[str, torch.Tensor], rank: int, alpha: float) -> set[str]:
    """Fold checkpoint LoRA factors into ``model``'s plain linear layers: W += (alpha / rank) * B @ A.

    Returns the checkpoint names consumed. Every factor must pair up and land on an existing layer of the right
    shape; anything else is a ValueError naming it.
    """
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        match = LORA_NAME.fullmatch(name)
        if match:
            pairs.setdefault(match["layer"], {})[match["which"]] = value
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer, factors in pairs.items():
            target = modules.get(layer.removesuffix(".base_layer"))
            if set(factors) != {"A", "B"} or not isinstance(target, nn.Linear):
                raise ValueError(f"LoRA factors of {layer} do not match a linear layer of this model")
            delta = factors["B"].to(target.weight) @ factors["A"].to(target.weight) * (alpha / rank)
            if delta.shape != target.weight.shape:
                raise ValueError(f"LoRA factors of {layer} make {tuple(delta.shape)}, the layer is {tuple(target.weight.shape)}")
            target.weight += delta
    return {name for name in tensors if LORA_NAME.fullmatch(name)}


def fold_adapters(model: nn.Module) -> int:
    """Merge peft LoRA adapters into their base layers and put the plain layers back (the inference form of a
    training-form model, in place); returns how many were folded."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            base = getattr(child, "get_base_layer", None)
            if base is not None and hasattr(child, "merge"):
                child.merge()
                setattr(parent, name, base())
                count += 1
    return count
