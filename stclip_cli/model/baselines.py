"""The two training-free baselines of the paper (method.md section 7): whole-frame CLIP and person-crop CLIP."""

from __future__ import annotations

import torch

from stclip_cli.model.base import ActionModel


class FrameBaseline(ActionModel):
    """CLIP image feature of the whole keyframe vs the action names; every person of the frame gets its scores."""

    uses_crops = False

    def forward(self, patches, windows, keyframes, crops, person_frame, text) -> torch.Tensor:
        """Logits (P, C) from the keyframes' features; patches, windows and crops are unused."""
        return self.cosine_logits(self.clip.encode_image(keyframes)[person_frame], text)


class CropBaseline(ActionModel):
    """CLIP image feature of each person crop vs the action names."""

    def forward(self, patches, windows, keyframes, crops, person_frame, text) -> torch.Tensor:
        """Logits (P, C) from the crops' features; patches, windows and keyframes are unused."""
        return self.cosine_logits(self.clip.encode_image(crops), text)
