"""Where `stclip eval` takes each test video's persons from, and which of its frames are scored.

Four sources: the ground-truth boxes (``--gt-boxes``), the dataset's own detections file (J-HMDB's reference
detections, AVA proposals), a folder of per-video boxes files in the formats `stclip detect --boxes` reads, or a
person detector run on the frames. Each gives a ``PersonDetector`` per video, so the evaluator treats them alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import supervision as sv

from stclip_cli.data.common import VideoRecord
from stclip_cli.core.detection import BoxesFile, PersonDetector, clip_to_frame
from stclip_cli.errors import StclipError


class PersonSource(Protocol):
    """Persons of the test videos: which frames to score and a detector for one video."""

    name: str

    def frames(self, video: VideoRecord) -> list[int]: ...

    def detector(self, video: VideoRecord) -> PersonDetector: ...


class FixedBoxes(PersonDetector):
    """A ``PersonDetector`` over boxes known in advance: ``{frame: (boxes (n, 4), scores (n,) or None)}``."""

    def __init__(self, boxes: Mapping[int, tuple[np.ndarray, np.ndarray | None]]) -> None:
        self.boxes = boxes

    def detect(self, images: list[np.ndarray], indices: Sequence[int] | None = None) -> list[sv.Detections]:
        """The boxes of each frame index, clipped to its image."""
        if indices is None or len(indices) != len(images):
            raise ValueError("FixedBoxes.detect needs the frame index of every image")
        out = []
        for image, index in zip(images, indices):
            boxes, scores = self.boxes.get(index, (np.zeros((0, 4)), None))
            xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
            confidence = None if scores is None else np.asarray(scores, np.float32).reshape(-1)
            out.append(clip_to_frame(sv.Detections(xyxy=xyxy, confidence=confidence), image.shape[1], image.shape[0]))
        return out


class GroundTruthPersons:
    """``--gt-boxes``: the annotated persons, on the annotated frames (other frames have nobody to score)."""

    name = "ground truth"

    def frames(self, video: VideoRecord) -> list[int]:
        """The annotated frames."""
        return sorted(video.gt)

    def detector(self, video: VideoRecord) -> PersonDetector:
        """The GT boxes, without scores (no false-positive filter applies)."""
        return FixedBoxes({f: (entry.boxes, None) for f, entry in video.gt.items()})


class DatasetPersons:
    """The dataset's own detections file (``VideoRecord.detections``), on every frame the benchmark scores."""

    name = "dataset detections"

    def frames(self, video: VideoRecord) -> list[int]:
        """Every frame the benchmark scores."""
        return video.scored_frames()

    def detector(self, video: VideoRecord) -> PersonDetector:
        """The video's detections; a video without any is an error (nothing says where its persons are)."""
        if video.detections is None:
            raise StclipError(f"no detected person boxes for {video.name}; pass --gt-boxes, --boxes or --detector")
        return FixedBoxes(video.detections)


class BoxesFolder:
    """A folder of per-video boxes files, read with ``BoxesFile`` (the formats `stclip detect --boxes` reads).

    The file of video ``name`` is ``<folder>/<name>.json`` (``name`` may hold a class folder, as UCF101-24's
    ``Basketball/v_Basketball_g01_c01`` does), else ``<folder>/<last part of name>.json``; ``.stclip.json``
    (the name `stclip detect` gives its JSON by default) is accepted too. Every file is found before any work.
    """

    def __init__(self, folder: Path, videos: Sequence[VideoRecord]) -> None:
        self.folder = Path(folder)
        self.name = f"boxes files in {self.folder}"
        self.paths = {video.name: self._find(video.name) for video in videos}

    def _find(self, name: str) -> Path:
        stems = [name, name.rstrip("/").split("/")[-1]]
        candidates = [self.folder / f"{stem}{suffix}" for stem in stems for suffix in (".json", ".stclip.json")]
        for path in candidates:
            if path.is_file():
                return path
        raise StclipError(f"no boxes file for video {name} in {self.folder}: expected {candidates[0]}")

    def frames(self, video: VideoRecord) -> list[int]:
        """Every frame the benchmark scores."""
        return video.scored_frames()

    def detector(self, video: VideoRecord) -> PersonDetector:
        """The video's boxes file."""
        return BoxesFile(self.paths[video.name])


class DetectorPersons:
    """A person detector (e.g. ``YoloPersonDetector``) run on every frame the benchmark scores."""

    def __init__(self, detector: PersonDetector, name: str) -> None:
        self._detector = detector
        self.name = f"detector {name}"

    def frames(self, video: VideoRecord) -> list[int]:
        """Every frame the benchmark scores."""
        return video.scored_frames()

    def detector(self, video: VideoRecord) -> PersonDetector:
        """The same detector for every video."""
        return self._detector


def boxes_file_option(dataset: str, boxes: Path | None, gt_boxes: bool, detector: str | None) -> dict:
    """--boxes FILE is the dataset's own detections file: the reader option that loads it (a folder is not)."""
    if boxes is None:
        return {}
    if gt_boxes or detector is not None:
        raise StclipError("--gt-boxes, --boxes and --detector each choose the persons: pass one of them")
    if not boxes.exists():
        raise StclipError(f"boxes file or folder not found: {boxes} (--boxes)")
    if boxes.is_dir():
        return {}
    option = {"jhmdb": "detections", "ava": "proposals"}.get(dataset)
    if option is None:
        raise StclipError(f"{dataset} has no detections file format of its own: pass --boxes DIR with one boxes "
                          "file per video (<video>.json, as detect --boxes reads), or --detector")
    return {option: boxes}


def eval_persons(view, gt_boxes: bool, boxes: Path | None, detector: str | None, conf: float, device: str, half: bool):
    """The persons eval scores: GT boxes, a boxes folder, the dataset's detections, or a person detector."""
    from stclip_cli.benchmark.persons import BoxesFolder, DatasetPersons, DetectorPersons, GroundTruthPersons

    if gt_boxes:
        if detector is not None:
            raise StclipError("--gt-boxes, --boxes and --detector each choose the persons: pass one of them")
        return GroundTruthPersons()
    if boxes is not None:
        return BoxesFolder(boxes, view.videos) if boxes.is_dir() else DatasetPersons()
    if detector is None and view.videos and all(v.detections is not None for v in view.videos):
        return DatasetPersons()
    from stclip_cli.core.detection import YoloPersonDetector

    name = detector or "yolo11n.pt"
    return DetectorPersons(YoloPersonDetector(name, conf, device, half=half), name)


__all__ = ["eval_persons", "boxes_file_option", "BoxesFolder", "DatasetPersons", "DetectorPersons", "FixedBoxes", "GroundTruthPersons", "PersonSource"]
