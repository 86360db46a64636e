"""ST-CLIP (method.md sections 1-6): person tokens, temporal context, person-context interaction, context prompting."""

from __future__ import annotations

import open_clip
import torch

from .adapter import PersonAdapter
from .base import ActionModel
from .clip_backbone import embed_context, patch_tokens, pooled_features
from .interaction import PersonLayout, add_lora, interact
from .prompting import ContextPrompting
from .temporal import TemporalContext


class STCLIP(ActionModel):
    """Frozen CLIP plus the trainable ST-CLIP modules; ``interest_k`` None uses all tokens (single-action data)."""

    uses_patches = True

    def __init__(
        self,
        clip: open_clip.CLIP,
        tokenizer,
        window: int = 9,
        lora_rank: int = 8,
        lora_alpha: float = 1.0,
        interest_k: int | None = None,
        rho_init: float = 0.2,
        temperature: float = 0.07,
    ) -> None:
        super().__init__(clip, tokenizer, temperature)
        visual = clip.visual
        width = visual.conv1.out_channels
        embed_dim = visual.proj.shape[1]
        self.window = window
        self.interest_k = interest_k
        self.adapter = PersonAdapter(width)
        self.temporal = TemporalContext(width, window)
        add_lora(visual, lora_rank, lora_alpha)
        self.prompting = ContextPrompting(len(visual.transformer.resblocks), width, embed_dim, rho_init)

    def frame_patches(self, frames: torch.Tensor) -> torch.Tensor:
        """CLIP conv1 patch tokens of preprocessed frames: (F, 3, S, S) -> (F, N, D), computed once per frame."""
        return patch_tokens(self.clip.visual, frames)

    def forward(
        self,
        patches: torch.Tensor,
        windows: torch.Tensor,
        keyframes: torch.Tensor,
        crops: torch.Tensor,
        person_frame: torch.Tensor,
        text: torch.Tensor,
    ) -> torch.Tensor:
        """Logits (P, C).

        patches (F, N, D) from ``frame_patches``; windows (K, T) indices into patches (-1 pads short videos);
        keyframes (K, 3, S, S) and crops (P, 3, S, S) preprocessed; person_frame (P,) keyframe of each person,
        non-decreasing; text (C, E) from ``encode_text``.
        """
        visual = self.clip.visual
        k = keyframes.shape[0]
        pooled = pooled_features(visual, torch.cat([keyframes, crops.to(keyframes.dtype)]))
        frame_features = pooled[:k] @ visual.proj
        persons = self.adapter(pooled[k:])
        valid = windows >= 0
        context = self.temporal(patches[windows.clamp(min=0)], None if bool(valid.all()) else valid)
        context = embed_context(visual, context)
        layout = PersonLayout(person_frame, k)
        tokens, text = interact(visual, context, persons, layout, text, self.prompting, self.interest_k)
        person_features = visual.ln_post(tokens[layout.frame, layout.position]) @ visual.proj + frame_features[person_frame]
        if not self.interest_k:
            text = text[person_frame]
        return self.cosine_logits(person_features, text)

    def parameter_groups(self) -> dict[str, int]:
        """Trainable parameter count per ST-CLIP module (for ``stclip params``)."""
        groups = {"person adapter": self.adapter, "temporal context": self.temporal}
        counts = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in groups.items()}
        counts["LoRA (c_fc, c_proj, every layer)"] = sum(
            p.numel() for n, p in self.clip.named_parameters() if p.requires_grad and "lora_" in n
        )
        counts["projectors D->E"] = sum(p.numel() for p in self.prompting.projectors.parameters())
        counts["prompt layers"] = sum(p.numel() for p in self.prompting.layers.parameters())
        return counts
