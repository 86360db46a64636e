"""Batches keyframes, their windows and their persons through an action model -> per-person action probabilities.

Each frame is preprocessed and patch-embedded once and shared by every window that contains it; text features are
computed once per action list. One forward pass scores a whole batch of keyframes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stclip_cli.model.base import ActionModel
from stclip_cli.core.preprocess import ClipPreprocess


@dataclass
class KeyframeRequest:
    """One keyframe to score: its frame index, its window's frame indices and its person boxes (n, 4) in pixels."""

    keyframe: int
    window: Sequence[int]
    boxes: np.ndarray


@dataclass
class ModelInputs:
    """The tensors of ``ActionModel.forward`` for a batch of keyframes."""

    patches: torch.Tensor
    windows: torch.Tensor
    keyframes: torch.Tensor
    crops: torch.Tensor
    person_frame: torch.Tensor

    def args(self) -> tuple[torch.Tensor, ...]:
        """Positional arguments for ``model(*inputs.args(), text)``."""
        return self.patches, self.windows, self.keyframes, self.crops, self.person_frame


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid per action (multi-label) or softmax over the actions (single-label)."""
    return logits.sigmoid() if multi_label else logits.softmax(dim=-1)


class Scorer:
    """Scores keyframes of one video at a time, caching per-frame CLIP inputs and patch tokens across batches."""

    def __init__(
        self,
        model: ActionModel,
        actions: Sequence[str],
        multi_label: bool = False,
        half: bool = False,
        frame_fit: str = "crop",
    ) -> None:
        self.model = model.eval()
        self.device = model.device
        self.actions = list(actions)
        self.multi_label = multi_label
        self.pre = ClipPreprocess(model.clip.visual.preprocess_cfg, self.device, frame_fit)
        self.text = model.encode_text(self.actions)
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if half and self.device.type == "cuda" else contextlib.nullcontext()
        )
        self._frames: dict[int, torch.Tensor] = {}
        self._patches: dict[int, torch.Tensor] = {}

    def reset(self) -> None:
        """Forget cached frames (call between videos)."""
        self._frames.clear()
        self._patches.clear()

    @torch.inference_mode()
    def ingest(self, index: int, image: np.ndarray) -> None:
        """Preprocess (and patch-embed, for models with temporal context) one frame now, once; afterwards its
        full-resolution pixels are no longer needed unless it is a keyframe (crops) or is drawn."""
        if index not in self._frames:
            with self.autocast:
                self._embed({index: image}, [index])

    def _embed(self, images: Mapping[int, np.ndarray], indices: Sequence[int]) -> None:
        """CLIP-preprocess and patch-embed frames not seen before."""
        if not indices:
            return
        fresh = self.pre.frames([images[f] for f in indices])
        patches = self.model.frame_patches(fresh) if self.model.uses_patches else None
        for j, f in enumerate(indices):
            self._frames[f] = fresh[j]
            if patches is not None:
                self._patches[f] = patches[j]

    @torch.inference_mode()
    def score(self, images: Mapping[int, np.ndarray], requests: Sequence[KeyframeRequest]) -> list[np.ndarray]:
        """Action probabilities (n_i, C) for each request, in order; ``images`` maps frame index -> HxWx3 uint8 RGB."""
        results = [np.zeros((len(r.boxes), len(self.actions)), np.float32) for r in requests]
        todo = [i for i, r in enumerate(requests) if len(r.boxes)]
        if not todo:
            return results
        with self.autocast:
            inputs = self.inputs(images, [requests[i] for i in todo])
            probs = probabilities(self.model(*inputs.args(), self.text).float(), self.multi_label).cpu().numpy()
        counts = np.cumsum([0] + [len(requests[i].boxes) for i in todo])
        for j, i in enumerate(todo):
            results[i] = probs[counts[j] : counts[j + 1]]
        return results

    def inputs(self, images: Mapping[int, np.ndarray], requests: Sequence[KeyframeRequest]) -> ModelInputs:
        """Build model inputs, preprocessing and embedding only frames not seen in an earlier batch."""
        needed = sorted({f for r in requests for f in (r.window if self.model.uses_patches else ())} | {r.keyframe for r in requests})
        for f in [f for f in self._frames if f < needed[0]]:
            self._frames.pop(f)
            self._patches.pop(f, None)
        self._embed(images, [f for f in needed if f not in self._frames])
        position = {f: j for j, f in enumerate(needed)}
        keys = [r.keyframe for r in requests]
        person_frame = torch.repeat_interleave(torch.arange(len(requests)), torch.tensor([len(r.boxes) for r in requests]))
        if self.model.uses_crops:
            crops = torch.cat([self.pre.person_crops(images[r.keyframe], r.boxes) for r in requests])
        else:
            crops = self._frames[keys[0]].new_zeros(0)
        longest = max(len(r.window) for r in requests) if self.model.uses_patches else 0
        windows = torch.full((len(requests), longest), -1, dtype=torch.long)
        for j, r in enumerate(requests):
            if self.model.uses_patches:
                windows[j, : len(r.window)] = torch.tensor([position[f] for f in r.window])
        return ModelInputs(
            patches=torch.stack([self._patches[f] for f in needed]) if self.model.uses_patches else crops.new_zeros(0),
            windows=windows.to(self.device),
            keyframes=torch.stack([self._frames[f] for f in keys]),
            crops=crops,
            person_frame=person_frame.to(self.device),
        )
