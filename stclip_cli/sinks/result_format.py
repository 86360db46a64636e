"""The JSON ``stclip detect`` writes (cli.md), its one owner: the writer the JSON sinks use and the one reader, with
one set of checks and messages, that ``--boxes`` (detection.BoxesFile) and ``stclip plot`` (timeline.py) use.

A reader says which frame and person fields it needs (``--boxes`` needs no times or scores, a timeline no frame
index); every field present is checked the same way, so one defect gets one message, naming the file and the entry
(``frames[3].persons[0].box ...``: entries.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stclip_cli.entries import Entries, shown
from stclip_cli.errors import StclipError, first_line
from stclip_cli.records import SCORES, ModelInfo, VideoInfo

if TYPE_CHECKING:
    import supervision as sv

FRAME_FIELDS = ("index", "time", "persons")
PERSON_FIELDS = ("box", "detector_score", "track_id", "scores")


# ---------------------------------------------------------------- writing


def header(info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any], video: str | None = None
           ) -> dict[str, Any]:
    """The per-video fields before "frames" (``model``: a ModelInfo or a dict of its fields; ``video``: what the
    JSON calls the video, when not the path it is decoded from)."""
    return {
        "video": video or str(info.path),
        "width": info.width,
        "height": info.height,
        "fps": float(info.fps),
        "num_frames": info.num_frames,
        "actions": list(actions),
        "model": asdict(model) if isinstance(model, ModelInfo) else dict(model),
    }


def frame_record(index: int, time: float, detections: sv.Detections, actions: list[str]) -> dict[str, Any]:
    """One scored frame of "frames": its index, its time (s, 6 decimals) and its persons."""
    return {"index": int(index), "time": round(float(time), 6), "persons": persons_json(detections, actions)}


def persons_json(detections: sv.Detections, actions: list[str]) -> list[dict[str, Any]]:
    """The "persons" list of one frame as the JSON sink writes it (handy for tests and other renderers)."""
    scores = action_scores(detections, len(actions))
    return [
        {
            "box": [round(float(v), 2) for v in detections.xyxy[i]],
            "detector_score": detector_score(detections, i),
            "track_id": track_id(detections, i),
            "scores": {name: round(float(p), 5) for name, p in zip(actions, scores[i])},
        }
        for i in range(len(detections))
    ]


def track_id(detections: sv.Detections, i: int) -> int | None:
    """Person ``i``'s track id, None when untracked (no ids, or a negative one)."""
    if detections.tracker_id is None or int(detections.tracker_id[i]) < 0:
        return None
    return int(detections.tracker_id[i])


def detector_score(detections: sv.Detections, i: int) -> float | None:
    """Person ``i``'s detector score (4 decimals), None when the boxes came without one."""
    if detections.confidence is None or not math.isfinite(float(detections.confidence[i])):
        return None
    return round(float(detections.confidence[i]), 4)


def action_scores(detections: sv.Detections, num_actions: int) -> np.ndarray:
    """The (n, num_actions) float32 action probabilities (zeros when the detections carry none)."""
    scores = detections.data.get(SCORES)
    if scores is None:
        return np.zeros((len(detections), num_actions), dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32).reshape(len(detections), num_actions)
    if scores.shape[1] != num_actions:
        raise ValueError(f"{scores.shape[1]} scores per person for {num_actions} actions")
    return scores


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class ResultPerson:
    """One entry of a frame's "persons"; a field the reader did not need and the file lacks is None (scores: {})."""

    box: list[float]
    detector_score: float | None
    track_id: int | None
    scores: dict[str, float]
    where: str
    labels: list[str] | None = None  # ground truth in the detect format: the person's action names


@dataclass(frozen=True)
class ResultFrame:
    """One entry of "frames"; ``where`` names it in messages (``frames[3]``)."""

    index: int | None
    time: float | None
    persons: list[ResultPerson]
    where: str


@dataclass(frozen=True)
class DetectResult:
    """A checked detect JSON: the fields a reader uses, the rest as found (``model``: {} when missing)."""

    video: str | None
    actions: list[str]
    fps: float | None
    num_frames: int | None
    model: dict[str, Any]
    frames: list[ResultFrame]


def is_detect_result(data: Any) -> bool:
    """Whether parsed JSON has the shape of a detect result (an object with a "frames" list): how ``--boxes`` tells
    it from a COCO-results list."""
    return isinstance(data, dict) and isinstance(data.get("frames"), list)


def load_json(path: Path, what: str) -> Any:
    """A JSON file parsed, or one line: ``<what> not found: <path>``, ``<path>: not a readable JSON <what> (why)``."""
    if not path.is_file():
        raise StclipError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise StclipError(f"{path}: not a readable JSON {what} ({first_line(err)})") from None


def parse_result(data: Any, source: Path | str, frame_needs: Collection[str] = FRAME_FIELDS,
                 person_needs: Collection[str] = PERSON_FIELDS, needs_actions: bool = True, needs_video: bool = False,
                 prefix: str = "") -> DetectResult:
    """Check parsed detect JSON and return it as records; one line naming ``source`` and the entry on the first
    defect. ``frame_needs``/``person_needs``: the fields that must be present (the others are checked when present);
    ``needs_actions``/``needs_video``: whether "actions" / "video" must be; ``prefix`` names the object in a list of
    them (``[2].``)."""
    if needs_video and isinstance(data, dict) and isinstance(data.get("frames"), list) and "video" not in data:
        raise StclipError(f"{source}: {prefix}video is missing: each result names its video")
    if isinstance(data, dict) and "frames" in data and not isinstance(data["frames"], list):
        Entries(source).array(data["frames"], f"{prefix}frames")
    if not is_detect_result(data) or (needs_actions and not isinstance(data.get("actions"), list)):
        wanted = '"actions" and "frames"' if needs_actions else '"frames"'
        raise StclipError(f"{source} is not a `stclip detect` result (an object with {wanted})")
    entries = Entries(source)
    if needs_video:
        entries.text(data["video"], f"{prefix}video")
    actions = [entries.text(a, f"{prefix}actions[{k}]") for k, a in enumerate(data.get("actions") or [])]
    frames = [_frame(entries, frame, f"{prefix}frames[{n}]", frame_needs, person_needs, actions)
              for n, frame in enumerate(data["frames"])]
    fps = data.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        fps = None
    num_frames = data.get("num_frames")
    model = data.get("model")
    return DetectResult(
        video=str(data["video"]) if "video" in data else None, actions=actions,
        fps=None if fps is None else float(fps),
        num_frames=num_frames if isinstance(num_frames, int) and not isinstance(num_frames, bool) else None,
        model=dict(model) if isinstance(model, Mapping) else {}, frames=frames)


def _frame(entries: Entries, value: Any, where: str, frame_needs: Collection[str], person_needs: Collection[str],
           actions: list[str]) -> ResultFrame:
    frame = entries.mapping(value, where)
    present = _present(entries, frame, where, frame_needs)
    index = entries.integer(frame["index"], f"{where}.index", from_text=True) if "index" in present else None
    time = entries.number(frame["time"], f"{where}.time") if "time" in present else None
    persons = entries.array(frame["persons"], f"{where}.persons") if "persons" in present else []
    return ResultFrame(index, time, [_person(entries, p, f"{where}.persons[{m}]", person_needs, actions)
                                     for m, p in enumerate(persons)], where)


def _person(entries: Entries, value: Any, where: str, needs: Collection[str], actions: list[str]) -> ResultPerson:
    person = entries.mapping(value, where)
    present = _present(entries, person, where, needs)
    box = entries.box(person["box"], f"{where}.box") if "box" in present else []
    score = person.get("detector_score")
    score = None if score is None else entries.number(score, f"{where}.detector_score", from_text=True)
    track = person.get("track_id")
    if track is not None and (isinstance(track, bool) or not isinstance(track, int) or not -2**63 <= track < 2**63):
        entries.fail(f"{where}.track_id", f"must be an integer (int64) or null, got {shown(track)}")
    scores: dict[str, float] = {}
    if "scores" in present:
        given = entries.mapping(person["scores"], f"{where}.scores")
        scores = {name: entries.number(p, f"{where}.scores[{json.dumps(name, ensure_ascii=False)}]")
                  for name, p in given.items()}
    labels = None
    if person.get("labels") is not None:
        labels = [entries.text(name, f"{where}.labels[{k}]")
                  for k, name in enumerate(entries.array(person["labels"], f"{where}.labels"))]
    return ResultPerson(box, score, track, scores, where, labels)


def _present(entries: Entries, entry: dict, where: str, needs: Collection[str]) -> set[str]:
    """The entry's keys, after checking that every needed one is there."""
    for key in needs:
        entries.field(entry, key, where)
    return set(entry)
