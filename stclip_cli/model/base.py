"""What every action model shares: the frozen open_clip CLIP, cached action-name text features, the scoring contract."""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
from torch import nn

from stclip_cli.errors import StclipError
from stclip_cli.model.clip_backbone import encode_text


class ActionModel(nn.Module):
    """Scores open-vocabulary action names for persons in keyframes.

    Contract (all tensors on the model's device): ``frame_patches(frames)`` embeds window frames once each;
    ``forward(patches, windows, keyframes, crops, person_frame, text)`` returns logits (P, C), persons grouped by
    keyframe. ``window`` is T (1 when no temporal context is used).
    """

    window: int = 1
    uses_patches: bool = False
    uses_crops: bool = True  # False: ``crops`` arrive empty (no person crop is cut and preprocessed for nothing)

    def __init__(self, clip: open_clip.CLIP, tokenizer, temperature: float) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.temperature = temperature
        self._text_cache: dict[tuple, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return self.clip.visual.conv1.weight.device

    @torch.no_grad()
    def encode_text(self, actions: Sequence[str]) -> torch.Tensor:
        """CLIP text features (C, E) of the action names, computed once per action list and device, then cached."""
        key = (tuple(actions), str(self.device))
        if key not in self._text_cache:
            check_fits(self.tokenizer, actions, self.clip.context_length)
            tokens = self.tokenizer(list(actions)).to(self.device)
            self._text_cache[key] = encode_text(self.clip, tokens).float()
        return self._text_cache[key]

    def frame_patches(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame patch tokens (F, N, D) for temporal context; empty for models without it."""
        return frames.new_zeros(frames.shape[0], 0, 0)

    def cosine_logits(self, visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """cos(visual_p, text_pc) / temperature for visual (P, E) and text (C, E) or per-person (P, C, E)."""
        visual = nn.functional.normalize(visual.float(), dim=-1)
        text = nn.functional.normalize(text.float(), dim=-1)
        if text.dim() == 2:
            return visual @ text.T / self.temperature
        return torch.einsum("pe,pce->pc", visual, text) / self.temperature

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters that learn: what checkpoints hold."""
        return {k: v.detach() for k, v in self.named_parameters() if v.requires_grad}


def check_fits(tokenizer, actions: Sequence[str], context_length: int) -> None:
    """Refuse an action name longer than the text encoder's context: the tokenizer would cut it silently, and two long
    names that differ only after the cut would score the same.

    Counted with open_clip's BPE tokenizer, start and end tokens included; other tokenizers are not checked.
    """
    encode = getattr(tokenizer, "encode", None)
    if encode is None or not hasattr(tokenizer, "sot_token_id"):
        return
    for name in actions:
        count = len(encode(name)) + 2
        if count > context_length:
            raise StclipError(
                f"action name '{name}' is {count} tokens; the text encoder reads at most {context_length} (shorten it)"
            )
