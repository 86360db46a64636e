"""ST-CLIP (method.md sections 1-6): person tokens, temporal context, person-context interaction, context prompting."""

from __future__ import annotations

import open_clip
import torch

from stclip_cli.model.adapter import PersonAdapter
from stclip_cli.model.base import ActionModel
from stclip_cli.model.clip_backbone import embed_context, patch_tokens, pooled_features
from stclip_cli.model.interaction import PersonLayout, interact
from stclip_cli.model.lora import add_lora
from stclip_cli.model.prompting import ContextPrompting
from stclip_cli.model.temporal import TemporalContext


class STCLIP(ActionModel):
    """Frozen CLIP plus the trainable ST-CLIP modules; ``interest_k`` None uses all tokens (single-action data).

    ``lora=False`` builds the inference form: no LoRA adapters, a checkpoint's LoRA merged into the FFN weights.
    """

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
        lora: bool = True,
    ) -> None:
        super().__init__(clip, tokenizer, temperature)
        visual = clip.visual
        width = visual.conv1.out_channels
        embed_dim = visual.proj.shape[1]
        self.window = window
        self.interest_k = interest_k
        self.lora_rank, self.lora_alpha = lora_rank, lora_alpha
        self.adapter = PersonAdapter(width)
        self.temporal = TemporalContext(width, window)
        if lora:  # trainable adapters; an inference model gets a checkpoint's LoRA merged into its weights instead
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
        return self.stages(patches, windows, keyframes, crops, person_frame, text)["logits"]

    def stages(
        self,
        patches: torch.Tensor,
        windows: torch.Tensor,
        keyframes: torch.Tensor,
        crops: torch.Tensor,
        person_frame: torch.Tensor,
        text: torch.Tensor,
        trace: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Every stage of the forward by name (the golden reference's names); ``trace`` adds each layer's output.

        frame_feat (K, E), person_pooled and person_token_in (P, D), temporal_context (K, N, D), context_tokens
        (K, 1+N, D), interaction (P, E, before the frame feature is added), prompted_text (G, C, E), logits (P, C);
        with ``trace`` also block_out_i (K, 1+B+N, D) and text_after_layer_i (G, C, E) for every layer i.
        """
        visual = self.clip.visual
        k = keyframes.shape[0]
        out: dict[str, torch.Tensor] = {}
        pooled = pooled_features(visual, torch.cat([keyframes, crops.to(keyframes.dtype)]))
        out["frame_feat"] = pooled[:k] @ visual.proj
        out["person_pooled"] = pooled[k:]
        out["person_token_in"] = persons = self.adapter(pooled[k:])
        valid = windows >= 0
        out["temporal_context"] = self.temporal(patches[windows.clamp(min=0)], None if bool(valid.all()) else valid)
        out["context_tokens"] = context = embed_context(visual, out["temporal_context"])
        layout = PersonLayout(person_frame, k)
        tokens, text = interact(
            visual, context, persons, layout, text, self.prompting, self.interest_k, out if trace else None
        )
        out["interaction"] = visual.ln_post(tokens[layout.frame, layout.position]) @ visual.proj
        out["prompted_text"] = text
        person_text = text if self.interest_k else text[person_frame]
        out["logits"] = self.cosine_logits(out["interaction"] + out["frame_feat"][person_frame], person_text)
        return out

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
