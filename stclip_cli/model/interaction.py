"""Person-context interaction (method.md sections 3-4): [cls, persons, context] through the LoRA-adapted frozen ViT,
with interest-token spotting and context prompting after every layer."""

from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from stclip_cli.model.clip_backbone import run_block
from stclip_cli.model.prompting import ContextPrompting


def spot_interest_tokens(attention_rows: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the top-k tokens of each person's head-averaged attention row: (P, S) -> (P, min(k, S))."""
    return attention_rows.topk(min(k, attention_rows.shape[-1]), dim=-1).indices


class PersonLayout:
    """Where each person sits in its keyframe's sequence [cls, persons (padded to the most per frame), context]."""

    def __init__(self, person_frame: torch.Tensor, num_frames: int) -> None:
        if person_frame.numel() and bool((person_frame[1:] < person_frame[:-1]).any()):
            raise ValueError("persons must be grouped by keyframe (person_frame non-decreasing)")
        counts = torch.bincount(person_frame, minlength=num_frames)
        starts = torch.cumsum(counts, 0) - counts
        self.frame = person_frame
        self.slot = torch.arange(person_frame.numel(), device=person_frame.device) - starts[person_frame]
        self.max_persons = int(counts.max()) if counts.numel() else 0
        self.position = 1 + self.slot
        slots = torch.arange(self.max_persons, device=person_frame.device)
        person_pad = slots[None, :] >= counts[:, None]
        self.counts = counts
        self.person_pad = person_pad

    def sequence(self, context: torch.Tensor, persons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Build the (K, 1+B+N, D) sequence and its key-padding mask (True on empty person slots)."""
        k, _, d = context.shape
        slots = persons.new_zeros(k, self.max_persons, d)
        slots[self.frame, self.slot] = persons
        x = torch.cat([context[:, :1], slots, context[:, 1:]], dim=1)
        pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        pad[:, 1 : 1 + self.max_persons] = self.person_pad
        return x, pad


def interact(
    visual: VisionTransformer,
    context: torch.Tensor,
    persons: torch.Tensor,
    layout: PersonLayout,
    text: torch.Tensor,
    prompting: ContextPrompting,
    interest_k: int | None,
    trace: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run [cls, persons, context] through every layer, prompting the text after each one.

    ``text`` is (C, E). With ``interest_k`` each person gets its own text, prompted by its top-k interest tokens
    (P, C, E); without, every person of a keyframe shares text prompted by all of the keyframe's tokens (K, C, E).
    Returns the final token sequence (K, 1+B+N, D) before ln_post, and the prompted text. ``trace`` (a dict)
    receives every layer's tokens (``block_out_i``) and prompted text (``text_after_layer_i``).
    """
    x, pad = layout.sequence(context, persons)
    key_pad = pad if bool(pad.any()) else None
    groups = layout.frame.numel() if interest_k else x.shape[0]
    text = text.to(x.dtype).expand(groups, *text.shape).contiguous()
    # every keyframe has >= 1 person, so N + 2 tokens are always real: a larger k could pick padding
    k = min(interest_k, context.shape[1] + 1) if interest_k else 0
    for i, block in enumerate(visual.transformer.resblocks):
        x, attention = run_block(block, x, key_pad, need_weights=bool(interest_k))
        if interest_k:
            chosen = spot_interest_tokens(attention[layout.frame, layout.position], k)
            text = prompting(i, text, x[layout.frame[:, None], chosen])
        else:
            text = prompting(i, text, x, key_pad)
        if trace is not None:
            trace[f"block_out_{i}"], trace[f"text_after_layer_{i}"] = x, text
    return x, text
