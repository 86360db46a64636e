"""The records that flow through detect, and the ``Sink`` every renderer is: the bottom floor, imported by the
sources, the predictor and the sinks and importing none of them (video -> frames -> boxes -> windows -> scores ->
outputs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # light on purpose: destinations.py (checked before any heavy module loads) builds on it
    import numpy as np
    import supervision as sv

SCORES = "scores"  # the key of the (n, C) action probabilities in ``sv.Detections.data``


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video before decoding it.

    ``width``/``height`` are after rotation. ``num_frames`` is the container's frame count, or, when the
    container does not store one, the number of video packets found by demuxing the file (no decoding);
    for a frame folder it is the number of image files; 0 when unknown (a stream). ``path`` is the input as given
    (a URL, ``-`` or a webcam name for a stream; streams.py). ``time_base`` is the unit of the stream's timestamps
    (frame times are exact multiples of it), None for a frame folder; writers use it to keep times exact.
    """

    path: Path | str
    width: int
    height: int
    fps: float
    num_frames: int
    rotation: int
    time_base: Fraction | None = None


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in the stream, its time in seconds and the upright RGB image; ``arrival`` is
    when it came out of the decoder (``time.monotonic()``), from which a live result's latency is measured, and
    ``waited`` the seconds spent waiting for the source to deliver it (a live source's pacing does not count it as
    work: pacing.AdaptiveStride)."""

    index: int
    time: float
    image: np.ndarray
    arrival: float | None = None
    waited: float = 0.0


@dataclass
class FrameResult:
    """One frame's result, the record every sink receives.

    ``detections``: xyxy boxes in original pixels, confidence = detector scores (or None), tracker_id (or
    None; negative ids mean untracked) and ``data["scores"]`` float32 (n, C) action probabilities.
    ``keyframe`` is False for frames that carry the previous keyframe's boxes and scores. ``image`` is the
    frame's RGB pixels, needed by the sinks that declare ``needs_images`` only. ``arrival``: when the frame came out
    of the decoder (``Frame.arrival``, ``time.monotonic()``), for its result's latency.
    """

    index: int
    time: float
    detections: sv.Detections
    keyframe: bool = True
    image: np.ndarray | None = None
    arrival: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    """The "model" object of the JSON output: what produced the scores, how they were normalised, the arithmetic
    (fp32, bf16 on GPU, int8 on CPU), and a note when the model is a stand-in (the training-free baseline scoring
    because ST-CLIP had no checkpoint)."""

    name: str
    backbone: str
    checkpoint: str | None
    mode: Literal["softmax", "sigmoid"]
    note: str | None = None
    precision: Literal["fp32", "bf16", "int8"] = "fp32"


class Sink(ABC):
    """What receives a video's results: ``open`` once, ``write`` per frame in order, then ``close`` (``abort`` on
    failure: nothing half-written is left). Capabilities are declared here, not probed: ``needs_images`` says the
    sink draws pixels, so the predictor keeps every frame's image until its result is written (and decodes a
    ``--single-action`` video a second time)."""

    needs_images: bool = False

    @abstractmethod
    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start one video's output."""

    @abstractmethod
    def write(self, result: FrameResult) -> None:
        """Add one frame's result."""

    @abstractmethod
    def close(self) -> None:
        """Finish the output and put it in place."""

    @abstractmethod
    def abort(self) -> None:
        """Stop; nothing appears under the final name and no temporary file is left."""
