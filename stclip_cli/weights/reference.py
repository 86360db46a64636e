"""Import checkpoints trained with the reference ST-CLIP code into stclip's safetensors format.

The reference names its modules after its own classes (``visual.temporalModelling``, ``prompts_generator.i.decoder.0``,
LoRA factors as bare ``lora_A``/``lora_B`` tensors); this module renames them to stclip's modules. Files are read with
torch's restricted unpickler (``weights_only=True``): tensors, numbers, strings and plain containers only, so a file
that needs any other object is refused instead of run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stclip_cli.weights.safe_loading import load_tensor_file
from stclip_cli.errors import StclipError

# (reference pattern, stclip name); the first match wins, \1 is the layer index
_RENAMES: list[tuple[str, str]] = [
    (r"visual\.transformer\.resblocks\.(\d+)\.mlp\.(c_fc|c_proj)\.(weight|bias)", r"clip.visual.transformer.resblocks.\1.mlp.\2.base_layer.\3"),
    (r"visual\.transformer\.resblocks\.(\d+)\.mlp\.(c_fc|c_proj)\.lora_(A|B)", r"clip.visual.transformer.resblocks.\1.mlp.\2.lora_\3.default.weight"),
    (r"visual\.transformer\.projector\.(\d+)\.(weight|bias)", r"prompting.projectors.\1.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.alpha", r"prompting.layers.\1.rho"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.norm\.(weight|bias)", r"prompting.layers.\1.norm_visual.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.norm1\.(weight|bias)", r"prompting.layers.\1.norm_text.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.norm3\.(weight|bias)", r"prompting.layers.\1.norm_ffn.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.cross_attn\.(q|k|v)_proj\.weight", r"prompting.layers.\1.attn.\2.weight"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.cross_attn\.proj\.(weight|bias)", r"prompting.layers.\1.attn.out.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.mlp\.0\.(weight|bias)", r"prompting.layers.\1.ffn.0.\2"),
    (r"visual\.transformer\.prompts_generator\.(\d+)\.decoder\.0\.mlp\.3\.(weight|bias)", r"prompting.layers.\1.ffn.2.\2"),
    (r"visual\.temporalEmbedding\.weight", "temporal.embedding.weight"),
    (r"visual\.temporalModelling\.resblocks\.0\.ln_1\.(weight|bias)", r"temporal.norm.\1"),
    (r"visual\.temporalModelling\.resblocks\.0\.attn\.(.+)", r"temporal.attn.\1"),
    (r"ln_person\.(weight|bias)", r"adapter.norm.\1"),
    (r"adapter\.(0|2)\.(weight|bias)", r"adapter.ffn.\1.\2"),
    (r"(visual\..+|token_embedding\..+|positional_embedding|transformer\.resblocks\..+|ln_final\..+|text_projection|logit_scale)", r"clip.\1"),
]
# built by the reference's temporal block but never run by its forward (the golden README lists them)
_UNUSED = re.compile(r"visual\.temporalModelling\.resblocks\.0\.(ln_2|mlp)\..+")
# where the reference's checkpointer puts the model: DDP's module., its ROI head's text feature generator, and the
# CLIP under clipmodel. (the person adapter sits beside it, in the generator)
_PREFIX = re.compile(r"^(?:module\.)*(?:roi_heads\.action\.text_feature_generator\.)?(?:clipmodel\.)?")


def read_reference(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat reference state dict in a file: nested under ``model``/``state_dict`` or not (the reference's
    checkpointer writes ``{"model": ..., "optimizer": ..., ...}``), with the prefixes ``module.``,
    ``roi_heads.action.text_feature_generator.`` and ``clipmodel.`` stripped. Any file that is not one (text,
    a truncated archive, a pickle of anything but tensors in plain containers) is one line naming it."""
    path = Path(path)
    if not path.exists():
        raise StclipError(f"reference checkpoint not found: {path}")
    if not path.is_file():
        raise StclipError(f"reference checkpoint {path} is {'a folder' if path.is_dir() else 'not a regular file'}; give the .pth file")
    data = load_tensor_file(path, "reference checkpoint")
    if isinstance(data, Mapping):
        for key in ("model", "state_dict", "reference_state_dict"):
            if isinstance(data.get(key), Mapping):
                extra = {k: v for k, v in data.items() if k in ("ln_person", "adapter")}
                data = {**data[key], **extra}
                break
    try:
        flat = _flatten(data) if isinstance(data, Mapping) else {}
    except RecursionError:
        raise StclipError(f"{path}: its containers nest too deeply for a state dict") from None
    if not flat:
        raise StclipError(f"{path}: holds no state dict of tensors")
    return {_PREFIX.sub("", k): v for k, v in flat.items()}


def _shown(name: str) -> str:
    """A name from a file, printable and short, for a one-line message."""
    text = ascii(name)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(key)] = value
        elif isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def to_stclip_names(reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a reference state dict to stclip's parameter names; unknown names are an error, unused ones dropped."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in reference.items():
        if _UNUSED.fullmatch(key):
            continue
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise StclipError(f"not an ST-CLIP reference state dict: unknown names such as {', '.join(_shown(k) for k in unknown[:3])}")
    return out


def load_reference_weights(model: torch.nn.Module, reference: Mapping[str, torch.Tensor], include_clip: bool = False) -> None:
    """Copy a reference state dict into ``model``: every trainable weight must be there with its shape; the frozen
    CLIP weights too when ``include_clip`` (the reference stores them; stclip's checkpoints do not)."""
    mapped = to_stclip_names(reference)
    params = dict(model.state_dict())
    wanted = {n for n, p in model.named_parameters() if p.requires_grad}
    if include_clip:
        wanted |= {n for n in params if n.startswith("clip.")}
    missing = sorted(wanted - set(mapped))
    if missing:
        raise StclipError(f"the reference weights lack {len(missing)} of this model's tensors, e.g. {missing[0]}")
    for name in sorted(wanted):
        value = mapped[name]
        if value.layout != torch.strided or not value.is_floating_point():
            raise StclipError(f"reference tensor for {name} is {value.dtype} ({value.layout}), not dense floating-point weights")
        if value.shape != params[name].shape:
            raise StclipError(
                f"reference tensor for {name} has shape {tuple(value.shape)}, this model needs "
                f"{tuple(params[name].shape)}: pick the --model/--backbone the reference was trained with"
            )
        if not bool(torch.isfinite(value).all()):
            raise StclipError(f"reference tensor for {name} holds NaN or infinite values; it cannot score")
    with torch.no_grad():
        for name in wanted:
            params[name].copy_(mapped[name])


__all__ = ["load_reference_weights", "read_reference", "to_stclip_names"]
