"""Person boxes per frame: an ultralytics YOLO detector, a precomputed boxes file, and the paper's FP filter."""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv

from stclip_cli.entries import DIGITS, LARGEST
from stclip_cli.errors import StclipError, first_line
from stclip_cli.quiet import quiet_logger
from stclip_cli.sinks.result_format import is_detect_result, load_json, parse_result


class PersonDetector(ABC):
    """What gives person boxes for a batch of frames (one call per batch).

    ``images`` are HxWx3 uint8 RGB; ``indices`` are their frame indices, which a boxes file needs and a
    detector ignores. Returns one ``sv.Detections`` per image: xyxy float32 pixels, confidence or None.
    """

    @abstractmethod
    def detect(self, images: list[np.ndarray], indices: Sequence[int] | None = None) -> list[sv.Detections]:
        """One ``sv.Detections`` per image."""

    def check_frames(self, num_frames: int, size: tuple[int, int] | None = None) -> str | None:
        """A warning when the detector cannot cover a video of ``num_frames`` frames of ``size`` (width, height): a
        boxes file for frames the video lacks, or boxes that do not fit it; a detector that looks at the pixels
        covers any video: None."""
        return None


def clip_to_frame(detections: sv.Detections, width: int, height: int) -> sv.Detections:
    """Clip boxes to the frame and drop those with zero area after clipping."""
    if len(detections) == 0:
        return detections
    detections = detections[:]
    detections.xyxy = sv.clip_boxes(detections.xyxy, (width, height)).astype(np.float32)
    x1, y1, x2, y2 = detections.xyxy.T
    return detections[(x2 > x1) & (y2 > y1)]


def fp_filter(detections: sv.Detections, margin: float | None) -> sv.Detections:
    """The paper's false-positive filter (method.md section 9): keep the best box S and every box above S - margin.

    ``margin=None`` or detections without scores leave the boxes as they are.
    """
    if margin is None or detections.confidence is None or len(detections) == 0:
        return detections
    best = float(np.max(detections.confidence))
    keep = detections.confidence > best - margin
    keep[int(np.argmax(detections.confidence))] = True
    return detections[keep]


def _detector_input(image: np.ndarray, scale: float) -> np.ndarray:
    """The BGR frame the detector sees, already shrunk to its input size when larger: the detector letterboxes to
    ``imgsz`` anyway, and shrinking first (area averaging) spares a full-resolution copy of every keyframe."""
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image[..., ::-1])


def _empty() -> sv.Detections:
    return sv.Detections(xyxy=np.empty((0, 4), dtype=np.float32), confidence=np.empty(0, dtype=np.float32))


class YoloPersonDetector(PersonDetector):
    """An ultralytics YOLO restricted to the person class, run batched over a list of frames.

    ``model`` is a local .pt file, an ultralytics name it may download (``yolo11n.pt``) or a .yaml
    architecture, which builds a randomly initialised model (used by the tests; no weights needed).
    """

    def __init__(
        self,
        model: str = "yolo11n.pt",
        conf: float = 0.25,
        device: str | None = None,
        imgsz: int = 640,
        half: bool = False,
    ) -> None:
        self.model = _load_yolo(str(model))
        self.conf = conf
        self.device = None if device in (None, "auto") else device
        self.imgsz = imgsz
        self.half = half
        names = {int(k): str(v).lower() for k, v in self.model.names.items()}
        self.person_class = next((k for k, v in sorted(names.items()) if v == "person"), 0)

    def detect(self, images: list[np.ndarray], indices: Sequence[int] | None = None) -> list[sv.Detections]:
        """Person boxes for each RGB image, in one batched ``predict`` call."""
        if not images:
            return []
        scales = [min(1.0, self.imgsz / max(image.shape[:2])) for image in images]
        bgr = [_detector_input(image, scale) for image, scale in zip(images, scales)]
        results = self.model.predict(
            bgr,
            classes=[self.person_class],
            conf=self.conf,
            device=self.device,
            imgsz=self.imgsz,
            batch=len(bgr),
            **({"half": True} if self.half else {}),
            verbose=False,
        )
        out = []
        for image, result, scale in zip(images, results, scales):
            det = sv.Detections.from_ultralytics(result)
            det.xyxy = det.xyxy / scale
            det = det[det.class_id == self.person_class] if det.class_id is not None else det
            det.xyxy = det.xyxy.astype(np.float32)
            if det.confidence is not None:
                det.confidence = det.confidence.astype(np.float32)
            out.append(clip_to_frame(det, image.shape[1], image.shape[0]))
        return out


def _load_yolo(model: str) -> Any:
    """Load or build the YOLO, with ultralytics' own banners and download warnings silenced: our lines say it all."""
    # ultralytics prints a settings banner on its first import on a machine unless it is told to be quiet
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import ultralytics  # noqa: F401  (its import configures the logger we quieten)

    with quiet_logger("ultralytics"):
        return _yolo(model)


def _yolo(model: str) -> Any:
    """A YOLO from a ``.yaml`` architecture (built, random weights) or a ``.pt`` checkpoint read without running code."""
    from ultralytics import YOLO

    from stclip_cli.weights.safe_loading import check_detector_architecture, load_detector_checkpoint

    path = Path(model)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        check_detector_architecture(model)
        try:
            return YOLO(model)
        except Exception as err:
            raise StclipError(f"cannot build person detector '{model}': {first_line(err)}") from None
    if suffix != ".pt":
        raise StclipError(
            f"person detector '{model}': expected an ultralytics .pt checkpoint or a .yaml architecture"
        )
    if not path.exists():
        path = _download(model)
    try:
        return load_detector_checkpoint(path, model)
    except StclipError:
        raise
    except Exception as err:
        raise StclipError(f"cannot load person detector '{model}': {first_line(err)}") from err


def fetch_detector(model: str) -> None:
    """Make sure the detector's weights are here (a local file, ultralytics' cache, or fetched now), before any work:
    a ``.yaml`` architecture needs none."""
    if Path(model).suffix.lower() == ".pt" and not Path(model).exists():
        os.environ.setdefault("YOLO_VERBOSE", "False")  # as _load_yolo: no first-run banner of ultralytics
        import ultralytics  # noqa: F401  (its import configures the logger we quieten)

        with quiet_logger("ultralytics"):
            _download(model)


def _download(model: str) -> Path:
    """An ultralytics release name (``yolo11n.pt``) fetched by ultralytics' own downloader into its usual place."""
    missing = (
        f"person detector weights '{model}' not found and could not be downloaded; download "
        f"https://github.com/ultralytics/assets/releases/latest/download/{Path(model).name} and pass --detector FILE, "
        "or give precomputed person boxes with --boxes FILE"
    ) if Path(model).parent == Path(".") else (
        f"person detector weights '{model}' not found; pass --detector PATH to a local ultralytics .pt file, or give "
        "precomputed person boxes with --boxes FILE")
    if Path(model).parent != Path("."):
        raise StclipError(missing)
    from ultralytics.utils import downloads

    try:
        found = Path(downloads.attempt_download_asset(model))
    except Exception as err:  # offline, rate-limited, unknown name: ultralytics raises several kinds
        raise StclipError(missing) from err
    if not found.is_file():
        raise StclipError(missing)
    return found


MAX_COORDINATE = 1e9  # pixels; any real frame is far smaller, and float32 holds it

BOXES_FORMATS = {
    "stclip": "the JSON 'stclip detect' writes: an object with \"frames\", boxes [x1, y1, x2, y2]",
    "coco": "a COCO-results list of {image_id, bbox, score}; bbox is [x, y, width, height] as COCO defines it",
    "xyxy": "a COCO-results-style list whose bbox is [x1, y1, x2, y2] (e.g. the J-HMDB reference detections)",
}

Row = tuple[list[float], float | None, int | None]  # one box: xyxy pixels, detector score, track id


class BoxesFile(PersonDetector):
    """Precomputed person boxes read from a file, served by frame index.

    ``format`` is one of ``BOXES_FORMATS``; by default the file's structure decides, and only between formats that
    structure tells apart: an object with "frames" is ``stclip``, a list is COCO results (``coco``, xywh as COCO
    defines it). A list with [x1, y1, x2, y2] boxes must say ``xyxy``. In list formats image_id is the 0-based frame
    index, category_id is ignored (every entry is a person) and scores may be numbers or numeric strings.
    """

    def __init__(self, path: str | Path, format: str | None = None) -> None:
        self.path = Path(path)
        self._guessed = False
        if format is not None and format not in BOXES_FORMATS:
            raise StclipError(f"unknown boxes format '{format}': use {', '.join(BOXES_FORMATS)}")
        data = load_json(self.path, "boxes file")
        is_detect_json = is_detect_result(data)
        if format is None:
            if not (is_detect_json or isinstance(data, list)):
                raise StclipError(
                    f"{self.path}: expected the JSON written by 'stclip detect' (an object with \"frames\") "
                    "or a COCO-results list"
                )
            format = "stclip" if is_detect_json else "coco"
            self._guessed = format == "coco"  # the default for a list: an xyxy file read so runs past its frames
        elif format == "stclip" and not is_detect_json:
            raise StclipError(f"{self.path}: not {BOXES_FORMATS['stclip']}")
        elif format != "stclip" and not isinstance(data, list):
            raise StclipError(f"{self.path}: not {BOXES_FORMATS[format]}")
        self.format = format
        self._placed: list[tuple[int, str]] = []  # (frame index, where in the file) of every box, in file order
        rows = self._from_detect_json(data) if format == "stclip" else self._from_list(data, format)
        self._frames: dict[int, sv.Detections] = {index: _to_detections(boxes) for index, boxes in rows.items()}

    def _from_detect_json(self, data: Any) -> dict[int, list[Row]]:
        """A detect JSON's boxes, read by its one reader (result_format.py): frames need an index, persons a box."""
        rows: dict[int, list[Row]] = {}
        result = parse_result(data, self.path, frame_needs=("index",), person_needs=("box",), needs_actions=False)
        for frame in result.frames:
            assert frame.index is not None
            bucket = rows.setdefault(frame.index, [])
            for person in frame.persons:
                track = person.track_id if person.track_id is not None and person.track_id >= 0 else None
                bucket.append((person.box, person.detector_score, track))
                self._placed.append((frame.index, person.where))
        return rows

    def _from_list(self, entries: list[Any], format: str) -> dict[int, list[Row]]:
        rows: dict[int, list[Row]] = {}
        for n, entry in enumerate(entries):
            where = f"entry {n}"
            if not isinstance(entry, dict):
                raise StclipError(f"{self.path}: {where} is not an object with image_id, bbox, score")
            index = self._index(entry.get("image_id"), f"{where} image_id")
            read = self._xywh if format == "coco" else self._xyxy
            box = read(entry.get("bbox"), f"{where} bbox")
            score = self._score(entry.get("score"), f"{where} score")
            rows.setdefault(index, []).append((box, score, None))
            self._placed.append((index, where))
        return rows

    def _index(self, value: Any, where: str) -> int:
        if isinstance(value, str) and DIGITS.fullmatch(value.strip()):  # ASCII digits: "²" is a digit to Python
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= LARGEST:
            raise StclipError(f"{self.path}: {where} must be a 0-based frame index, got {value!r}")
        return value

    def _numbers(self, value: Any, where: str, layout: str) -> list[float]:
        try:  # a list of real numbers: not a string of digits ("1234"), not booleans
            box = [float(v) for v in value] if isinstance(value, list) and not any(isinstance(v, (bool, str)) for v in value) else []
        except (TypeError, ValueError, OverflowError):
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise StclipError(f"{self.path}: {where} must be 4 finite numbers {layout}, got {value!r}")
        if not all(abs(v) <= MAX_COORDINATE for v in box):  # boxes are float32 pixels: 1e308 would become inf
            raise StclipError(f"{self.path}: {where} {value!r} reaches past any frame (coordinates are pixels, at most "
                              f"{MAX_COORDINATE:.0e})")
        return box

    def _xyxy(self, value: Any, where: str) -> list[float]:
        """[x1, y1, x2, y2]; a zero-area box (clipped at a frame edge) is kept and later dropped, an inverted one is an error."""
        x1, y1, x2, y2 = box = self._numbers(value, where, "[x1, y1, x2, y2]")
        if x2 < x1 or y2 < y1:
            raise StclipError(f"{self.path}: {where} {value!r} has x2 < x1 or y2 < y1; boxes here are [x1, y1, x2, y2]")
        return box

    def _xywh(self, value: Any, where: str) -> list[float]:
        """COCO's [x, y, width, height] -> [x1, y1, x2, y2]; width and height must be positive."""
        x, y, w, h = self._numbers(value, where, "[x, y, width, height]")
        if w <= 0 or h <= 0:
            raise StclipError(
                f"{self.path}: {where} {value!r} has a width or height <= 0 (COCO's bbox is [x, y, width, height]; "
                "for [x1, y1, x2, y2] boxes use the xyxy format)"
            )
        return [x, y, x + w, y + h]

    def _score(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        try:
            score = float(value)
        except (TypeError, ValueError, OverflowError):
            score = math.nan
        if not math.isfinite(score) or isinstance(value, bool):
            raise StclipError(f"{self.path}: {where} must be a number, got {value!r}")
        return score

    def check_frames(self, num_frames: int, size: tuple[int, int] | None = None) -> str | None:
        """One warning line when boxes name frames the video does not have (``num_frames`` <= 0: unknown, no check),
        or when a list read as COCO [x, y, width, height] by default has every box run past the frame while read as
        [x1, y1, x2, y2] they would fit: the file looks like xyxy."""
        said = []
        beyond = [(index, where) for index, where in self._placed if index >= num_frames] if num_frames > 0 else []
        if beyond:
            index, where = beyond[0]
            what = "1 box names a frame" if len(beyond) == 1 else f"{len(beyond)} boxes name frames"
            said.append(f"{self.path}: {what} beyond the video's {num_frames} frames (first: {where}, frame {index})")
        if self._guessed and size is not None and self._looks_xyxy(*size):
            said.append(f"{self.path}: every box runs past the {size[0]}x{size[1]} frame when read as COCO [x, y, "
                        "width, height], and fits it as [x1, y1, x2, y2]: if that is the file's layout, pass "
                        "--boxes-format xyxy")
        return "; ".join(said) or None

    def _looks_xyxy(self, width: int, height: int) -> bool:
        """Every box (read as xywh: x2 = x + w) runs past the frame, and every box fits it read as xyxy."""
        boxes = [det.xyxy for det in self._frames.values() if len(det)]
        if not boxes:
            return False
        xyxy = np.concatenate(boxes).astype(np.float64)
        x, y, w, h = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
        past = (xyxy[:, 2] > width + 1) | (xyxy[:, 3] > height + 1)
        fits = (w <= width + 1) & (h <= height + 1) & (w >= x) & (h >= y)
        return bool(past.all() and fits.all())

    @property
    def frame_indices(self) -> list[int]:
        """The frame indices that have at least one box, sorted."""
        return sorted(index for index, det in self._frames.items() if len(det))

    def boxes_for(self, frame_index: int, size: tuple[int, int] | None = None) -> sv.Detections:
        """The boxes of one frame (empty when the file has none), clipped to ``size=(width, height)`` if given."""
        det = self._frames.get(frame_index)
        if det is None:
            return _empty()
        return clip_to_frame(det, *size) if size is not None else det[:]

    def detect(self, images: list[np.ndarray], indices: Sequence[int] | None = None) -> list[sv.Detections]:
        """The ``PersonDetector`` protocol: look up each frame's boxes by index, clipped to its image."""
        if indices is None or len(indices) != len(images):
            raise ValueError("BoxesFile.detect needs the frame index of every image")
        return [self.boxes_for(i, (image.shape[1], image.shape[0])) for i, image in zip(indices, images)]


def _to_detections(boxes: list[Row]) -> sv.Detections:
    if not boxes:
        return _empty()
    xyxy = np.array([b for b, _, _ in boxes], dtype=np.float32).reshape(-1, 4)
    scores = [s for _, s, _ in boxes]
    confidence = None
    if any(s is not None for s in scores):
        confidence = np.array([1.0 if s is None else s for s in scores], dtype=np.float32)
    tracks = [t for _, _, t in boxes]
    tracker_id = np.array(tracks, dtype=int) if all(t is not None for t in tracks) else None
    return sv.Detections(xyxy=xyxy, confidence=confidence, tracker_id=tracker_id)
