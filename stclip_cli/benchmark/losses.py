"""Focal losses of method.md section 8: softmax focal for single-label classes, sigmoid focal for multi-label ones."""

from __future__ import annotations

import torch
from torchvision.ops import sigmoid_focal_loss


def softmax_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Sum over boxes of -(1 - p_t)^gamma log p_t, no alpha (torchvision ships only the sigmoid form)."""
    log_p = logits.log_softmax(dim=-1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).sum()


def action_loss(
    logits: torch.Tensor, labels: torch.Tensor, single_label: torch.Tensor, gamma: float = 2.0,
    boxes: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss of (P, C) logits against multi-hot labels, divided by ``boxes`` (default: P, at least 1).

    ``single_label`` (C,) bool marks the classes trained with one softmax over each other (all J-HMDB / UCF classes,
    AVA pose classes); the rest get a sigmoid focal loss each. Multi-GPU training passes the box count averaged over
    the ranks, as the reference does, so every box weighs the same whichever rank holds it.
    """
    total = logits.new_zeros(())
    if bool(single_label.any()):
        group_logits, group_labels = logits[:, single_label], labels[:, single_label]
        has = group_labels.sum(1) > 0
        if bool(has.any()):
            total = total + softmax_focal_loss(group_logits[has], group_labels[has].argmax(1), gamma)
    if bool((~single_label).any()):
        multi = ~single_label
        total = total + sigmoid_focal_loss(logits[:, multi], labels[:, multi], alpha=-1, gamma=gamma, reduction="sum")
    return total / (max(logits.shape[0], 1) if boxes is None else boxes)
