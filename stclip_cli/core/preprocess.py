"""CLIP preprocessing of whole frames and person crops, with open_clip's own transform.

Frames and crops go through exactly what open_clip builds for the model (``image_transform_v2`` of the model's
``preprocess_cfg``: resize the short side with antialiased bicubic, centre crop, normalise), as the reference does.
It works on uint8 pixels one image at a time, so the float copies are the model's size (3x224x224), not the
frame's: memory does not grow with the input's resolution, and on CPU it is faster than resampling float frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

FRAME_FITS = ("crop", "letterbox")


def crop_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Person boxes as the integer pixel rectangles that are cropped: rounded, clipped to [0, width - 1] x
    [0, height - 1] as the reference clips them (inclusive pixel convention, so a box reaching the border loses the
    last row/column), at least one pixel wide and high (degenerate or outside boxes still give a crop).
    One rule for detect, train and eval."""
    b = np.round(np.asarray(boxes, np.float64).reshape(-1, 4))
    x1 = np.clip(b[:, 0], 0, width - 1)
    y1 = np.clip(b[:, 1], 0, height - 1)
    x2 = np.maximum(np.clip(b[:, 2], 0, width - 1), x1 + 1)
    y2 = np.maximum(np.clip(b[:, 3], 0, height - 1), y1 + 1)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int64)


class ClipPreprocess:
    """Turns uint8 RGB frames and pixel boxes into normalised CLIP inputs of the model's image size."""

    def __init__(self, preprocess_cfg: dict, device: torch.device | str = "cpu", frame_fit: str = "crop") -> None:
        if frame_fit not in FRAME_FITS:
            raise ValueError(f"frame_fit must be one of {FRAME_FITS}")
        known = {f.name for f in dataclasses.fields(PreprocessCfg)}
        cfg = PreprocessCfg(**{k: v for k, v in preprocess_cfg.items() if k in known})
        self.size = (cfg.size, cfg.size) if isinstance(cfg.size, int) else tuple(cfg.size)
        self.device = torch.device(device)
        self.frame_fit = frame_fit
        self._crop = image_transform_v2(cfg, is_train=False)
        # letterbox: the whole frame, its long side resized to the model's size and padded (open_clip's "longest")
        fit = dataclasses.replace(cfg, resize_mode="longest") if frame_fit == "letterbox" else cfg
        self._frame = image_transform_v2(fit, is_train=False)

    def frames(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Whole HxWx3 uint8 frames -> (n, 3, S, S) on the device: CLIP's resize + centre crop (or a letterbox)."""
        return self._stack([self._frame(Image.fromarray(image)) for image in images])

    def person_crops(self, image: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """Person crops of one HxWx3 uint8 frame: boxes (P, 4) xyxy pixels -> (P, 3, S, S) on the device.

        Each box is cut out at integer pixels (``crop_boxes``), then preprocessed like any CLIP input.
        """
        height, width = image.shape[:2]
        crops = [self._crop(Image.fromarray(image[y1:y2, x1:x2])) for x1, y1, x2, y2 in crop_boxes(boxes, width, height)]
        return self._stack(crops)

    def _stack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        if not tensors:
            return torch.zeros(0, 3, *self.size, device=self.device)
        return torch.stack(tensors).to(self.device, non_blocking=True)
