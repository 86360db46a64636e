"""CLIP preprocessing on batched tensors: whole frames and person crops, resized and centre-cropped as open_clip does.

open_clip's transform works on one PIL image at a time; torchvision's roi_align crops and resizes every frame and every
person of a batch in one call (its adaptive sampling averages like an antialiased resize) with open_clip's own size,
mean and std (``visual.preprocess_cfg``).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import roi_align

FRAME_FITS = ("crop", "letterbox")


class ClipPreprocess:
    """Turns uint8 RGB frames and pixel boxes into normalised CLIP inputs of the model's image size."""

    def __init__(self, preprocess_cfg: dict, device: torch.device | str = "cpu", frame_fit: str = "crop") -> None:
        if frame_fit not in FRAME_FITS:
            raise ValueError(f"frame_fit must be one of {FRAME_FITS}")
        size = preprocess_cfg["size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.device = torch.device(device)
        self.mean = torch.tensor(preprocess_cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocess_cfg["std"], device=self.device).view(1, 3, 1, 1)
        self.frame_fit = frame_fit

    def to_tensor(self, images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Same-sized HxWx3 uint8 RGB images -> (n, 3, H, W) float in [0, 1] on the device."""
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(images) if isinstance(images, list) else images))
        return batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)

    def frames(self, images: torch.Tensor) -> torch.Tensor:
        """Whole frames (n, 3, H, W): CLIP's resize-shortest-side + centre crop (or a letterbox with ``frame_fit``)."""
        n, _, h, w = images.shape
        side = min(h, w) if self.frame_fit == "crop" else max(h, w)
        box = torch.tensor([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2], device=images.device)
        rois = torch.cat([torch.arange(n, device=images.device, dtype=box.dtype)[:, None], box.expand(n, 4)], dim=1)
        return self._resample(images, rois)

    def crops(self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """Person crops: boxes (P, 4) xyxy pixels of images[image_index] -> (P, 3, S, S).

        Boxes are rounded to integer pixels and clipped to the frame (at least 1 pixel), so degenerate or outside
        boxes still give a crop; then the crop is resized on its short side and centre-cropped like any CLIP input.
        """
        h, w = images.shape[-2:]
        b = boxes.to(images.device, torch.float32).round()
        x1 = b[:, 0].clamp(0, w - 1)
        y1 = b[:, 1].clamp(0, h - 1)
        x2 = torch.maximum(b[:, 2].clamp(0, w), x1 + 1)
        y2 = torch.maximum(b[:, 3].clamp(0, h), y1 + 1)
        side = torch.minimum(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        square = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dim=1)
        rois = torch.cat([image_index.to(images.device, torch.float32)[:, None], square], dim=1)
        return self._resample(images, rois)

    def _resample(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        out = roi_align(images, rois, self.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return (out - self.mean) / self.std
