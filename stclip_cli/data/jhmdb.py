"""J-HMDB reader: frame folders, reference JSON or ``JHMDB-GT.pkl`` annotations, reference person detections.

Layout under the data root (annotation files may also sit in ``<root>/annotations/``)::

    videos/<class>/<video>/00001.png ...        the official frames (1-based file numbers)
    jhmdb_{train,test}_gt_min.json              reference COCO-like ground truth, or
    JHMDB-GT.pkl                                the widely used pickle (labels, gttubes, nframes, ...)
    jhmdb_faster_RCNN_person.json               reference person detections (optional)
    label_split_K/{train,test}_video.txt        reference split video lists (optional)
    testlist.txt                                reference list of official split-1 test frames (optional)

Video pool (``pool``): ``"official"`` (the default, the reference's protocol) keeps the videos of the split's
list (or classes) that lie in the official split-1 half of ``subset``: the reference trains on
``jhmdb_train_gt_min.json`` x ``train_video.txt`` and tests on ``jhmdb_test_gt_min.json`` x ``test_video.txt``
(78 test videos for split 1). The halves come from the pickle's ``{train,test}_videos[0]``, else the movies of
``jhmdb_{train,test}_gt_min.json`` (one file is enough: the other half is every other video), else
``testlist.txt``. ``"all"`` takes every video of the split's classes, both halves (more training videos; nothing
leaks, the classes are disjoint).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stclip_cli.data.common import DatasetView, FrameBoxes, VideoRecord, load_image, read_json
from stclip_cli.data.safe_pickle import load_data_pickle
from stclip_cli.data.splits import get_split
from stclip_cli.entries import Entries
from stclip_cli.errors import StclipError

PICKLE_KEYS = ("labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution")
POOLS = ("official", "all")
HALF_JSONS = {"jhmdb_train_gt_min.json": "train", "jhmdb_test_gt_min.json": "test"}  # the reference's two files
SUBSETS = ("train", "test")


def find_file(root: Path, name: str) -> Path | None:
    """``<root>/<name>`` or ``<root>/annotations/<name>``, whichever exists first."""
    for candidate in (root / name, root / "annotations" / name):
        if candidate.exists():
            return candidate
    return None


def load_gt_pickle(path: Path) -> dict[str, Any]:
    """Load a ``JHMDB-GT.pkl`` / ``UCF101v2-GT.pkl`` style pickle (Python 2 pickles decoded as latin1)."""
    data = load_data_pickle(path, "annotation file")
    missing = [k for k in PICKLE_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise StclipError(f"{path} lacks the keys {', '.join(missing)} of the JHMDB-GT.pkl layout")
    return data


def pickle_ground_truth(data: dict[str, Any]) -> dict[str, dict[int, FrameBoxes]]:
    """Per video key (``"class/video"``) and 0-based frame: GT boxes and labels from the pickle's gttubes."""
    labels = list(data["labels"])
    out: dict[str, dict[int, FrameBoxes]] = {}
    for video, tubes in data["gttubes"].items():
        per_frame: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
        for label_index, tube_list in tubes.items():
            for tube in tube_list:
                for row in np.asarray(tube, dtype=np.float64).reshape(-1, 5):
                    boxes, names = per_frame[int(row[0]) - 1]
                    boxes.append(row[1:5])
                    names.append([labels[int(label_index)]])
        out[video] = {
            frame: FrameBoxes(np.asarray(boxes, np.float32).reshape(-1, 4), names)
            for frame, (boxes, names) in sorted(per_frame.items())
        }
    return out


@dataclass
class CocoGroundTruth:
    """A checked COCO-like GT file: image id -> (movie, 0-based frame), frame size per movie, and the persons.

    ``persons`` holds ``((movie, frame), box xyxy, class names)`` per annotation; ``movies`` every movie of
    ``images[]``, annotated or not.
    """

    images: dict[int, tuple[str, int]]
    sizes: dict[str, tuple[int, int]]
    persons: list[tuple[tuple[str, int], list[float], list[str]]]

    @property
    def movies(self) -> set[str]:
        """Every movie named by ``images[]``."""
        return {movie for movie, _ in self.images.values()}


def read_coco_ground_truth(path: Path, class_names: Sequence[str]) -> CocoGroundTruth:
    """Read and check a COCO-like GT JSON file (see ``coco_ground_truth``)."""
    return coco_ground_truth(read_json(path, "annotation file"), path, class_names)


def coco_ground_truth(data: Any, path: Path, class_names: Sequence[str]) -> CocoGroundTruth:
    """Check the parsed COCO-like GT ``data`` of file ``path``: ``images[]`` (id, movie, 1-based timestamp,
    optional width/height) and ``annotations[]`` (image_id, bbox xyxy pixels, 1-based action_ids into
    ``class_names``). Any bad entry is one StclipError naming the file and the entry (``annotations[3].bbox``).
    """
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise StclipError(f"{path} is not a COCO-like annotation file (needs images[] and annotations[])")
    check = Entries(path)
    images: dict[int, tuple[str, int]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for i, image in enumerate(check.array(data["images"], "images")):
        where = f"images[{i}]"
        check.mapping(image, where)
        ident = check.integer(check.field(image, "id", where), f"{where}.id", from_text=True)
        movie = check.text(check.field(image, "movie", where), f"{where}.movie")
        frame = check.integer(check.field(image, "timestamp", where), f"{where}.timestamp", first=1, from_text=True) - 1
        images[ident] = (movie, frame)
        if "width" in image and "height" in image:
            sizes[movie] = (check.integer(image["width"], f"{where}.width", first=1, from_text=True),
                            check.integer(image["height"], f"{where}.height", first=1, from_text=True))
    persons = []
    for i, ann in enumerate(check.array(data["annotations"], "annotations")):
        where = f"annotations[{i}]"
        check.mapping(ann, where)
        image_id = check.integer(check.field(ann, "image_id", where), f"{where}.image_id", from_text=True)
        if image_id not in images:
            check.fail(f"{where}.image_id", f"names no image of images[]: {image_id}")
        box = check.box(check.field(ann, "bbox", where), f"{where}.bbox")
        names = []
        for k, action in enumerate(check.array(check.field(ann, "action_ids", where), f"{where}.action_ids")):
            action = check.integer(action, f"{where}.action_ids[{k}]", first=1)
            if action > len(class_names):
                check.fail(f"{where}.action_ids[{k}]", f"must be an action id in 1..{len(class_names)}, got {action}")
            names.append(class_names[action - 1])
        persons.append((images[image_id], box, names))
    return CocoGroundTruth(images, sizes, persons)


def _json_ground_truth(
    paths: Iterable[Path], classes: Sequence[str], folders: Iterable[str]
) -> tuple[dict[str, dict[int, FrameBoxes]], dict[str, tuple[int, int]], dict[int, tuple[str, int]], dict[str, set[str]] | None]:
    """GT per video and 0-based frame, frame size per video, image id -> (video, frame) from COCO-like JSON, and
    the official halves named by files ``jhmdb_{train,test}_gt_min.json`` among ``paths`` (their movies; None
    without either; a missing half is every other video of ``folders``)."""
    gt: dict[str, dict[int, tuple[list, list]]] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    sizes: dict[str, tuple[int, int]] = {}
    images: dict[int, tuple[str, int]] = {}
    halves: dict[str, set[str]] = {}
    for path in paths:
        read = read_coco_ground_truth(path, classes)
        if Path(path).name in HALF_JSONS:
            halves.setdefault(HALF_JSONS[Path(path).name], set()).update(read.movies)
        images.update(read.images)
        sizes.update(read.sizes)
        for (video, frame), box, names in read.persons:
            boxes, labels = gt[video][frame]
            boxes.append(box)
            labels.append(names)
    out = {
        video: {f: FrameBoxes(np.asarray(b, np.float32).reshape(-1, 4), n) for f, (b, n) in sorted(fr.items())}
        for video, fr in gt.items()
    }
    if halves:
        every = set(folders)
        halves = {"train": halves.get("train", every - halves.get("test", set())),
                  "test": halves.get("test", every - halves.get("train", set()))}
    return out, sizes, images, halves or None


def load_coco_detections(
    path: Path, images: dict[int, tuple[str, int]]
) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """COCO-results person boxes (image_id, bbox xyxy pixels, score possibly a string) per video and frame.

    Entries whose image id is not among ``images`` (frames outside the annotations) are left out.
    """
    rows = read_json(path, "detections file")
    check = Entries(path)
    if not isinstance(rows, list):
        raise StclipError(f"{path} is not a COCO-results list of detections")
    grouped: dict[str, dict[int, tuple[list, list]]] = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for i, row in enumerate(rows):
        where = f"[{i}]"
        check.mapping(row, where)
        key = images.get(check.integer(check.field(row, "image_id", where), f"{where}.image_id", from_text=True))
        box = check.box(check.field(row, "bbox", where), f"{where}.bbox")
        score = check.number(check.field(row, "score", where), f"{where}.score", from_text=True)
        if key is None:
            continue
        boxes, scores = grouped[key[0]][key[1]]
        boxes.append(box)
        scores.append(score)
    return {
        video: {
            f: (np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32)) for f, (b, s) in fr.items()
        }
        for video, fr in grouped.items()
    }


def _frame_folders(root: Path) -> dict[str, tuple[str, Path]]:
    """Video name -> (class, frame folder) for every ``<root>/videos/<class>/<video>/00001.png``."""
    found = {p.parent.name: (p.parent.parent.name, p.parent) for p in root.glob("videos/*/*/00001.png")}
    if not found:
        raise StclipError(
            f"J-HMDB frames not found: expected {root}/videos/<class>/<video>/00001.png; "
            "set --data-root or STCLIP_DATA"
        )
    return found


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def open_jhmdb(
    root: Path,
    split: int,
    subset: str,
    anno: Sequence[Path] | None = None,
    pkl: Path | None = None,
    detections: Path | None = None,
    pool: str = "official",
) -> DatasetView:
    """Videos of ``subset`` (train/test) of ZS-JHMDB ``split`` with GT and, when available, detections.

    Annotations: ``anno`` JSON files, else ``pkl``, else the default file names under the root (JSON first).
    Detections (reference JSON, image ids mapped through the GT JSON's images) load from ``detections`` or
    the default name when present (the default is ignored for pickle annotations, which carry no image ids);
    ``VideoRecord.detections`` stays None otherwise.
    """
    root = Path(root)
    label_split = get_split("jhmdb", split)
    if subset not in SUBSETS:
        raise StclipError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if pool not in POOLS:
        raise StclipError(f"unknown video pool {pool!r}: expected one of {', '.join(POOLS)}")
    folders = _frame_folders(root)
    classes = list(label_split.all_classes)

    if anno is None and pkl is None:
        defaults = [find_file(root, f"jhmdb_{s}_gt_min.json") for s in SUBSETS]
        anno = [p for p in defaults if p is not None] or None
        pkl = find_file(root, "JHMDB-GT.pkl") if anno is None else None
        if anno is None and pkl is None:
            raise StclipError(
                f"J-HMDB annotations not found: expected jhmdb_{{train,test}}_gt_min.json or JHMDB-GT.pkl in "
                f"{root} or {root}/annotations; pass --anno FILE"
            )
    images: dict[int, tuple[str, int]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    official: dict[str, set[str]] | None = None
    if anno:
        gt, sizes, images, official = _json_ground_truth(anno, classes, folders)
    else:
        data = load_gt_pickle(Path(pkl))
        gt = {key.split("/")[-1]: frames for key, frames in pickle_ground_truth(data).items()}
        sizes = {k.split("/")[-1]: (int(r[1]), int(r[0])) for k, r in data["resolution"].items()}
        official = {
            "train": {v.split("/")[-1] for v in data["train_videos"][0]},
            "test": {v.split("/")[-1] for v in data["test_videos"][0]},
        }

    wanted = set(label_split.train_classes if subset == "train" else label_split.test_classes)
    list_file = find_file(root, f"label_split_{split}/{subset}_video.txt")
    if list_file is not None:
        names = _read_list(list_file)
    else:
        names = sorted(v for v, (cls, _) in folders.items() if cls in wanted)
    if pool == "official":
        if official is None:
            official = _official_from_testlist(root, folders)
        names = [v for v in names if v in official[subset]]

    videos, skipped = [], []
    for name in names:
        if name not in folders:
            raise StclipError(
                f"J-HMDB frames not found: expected {root}/videos/<class>/{name}/00001.png; "
                "set --data-root or STCLIP_DATA"
            )
        if name not in gt:
            skipped.append(name)
            continue
        cls, folder = folders[name]
        frame_paths = sorted(folder.glob("*.png"))
        width, height = sizes.get(name) or _image_size(frame_paths[0])
        videos.append(VideoRecord(name, width, height, len(frame_paths), frame_paths, label=cls, gt=gt[name]))

    det_path = detections if detections is not None else find_file(root, "jhmdb_faster_RCNN_person.json")
    if det_path is not None and (images or detections is not None):
        if not images:
            raise StclipError(
                f"cannot map the image ids of {det_path}: load the annotations from the GT JSON (--anno), "
                "whose images[] give each id's video and frame"
            )
        dets = load_coco_detections(Path(det_path), images)
        for video in videos:
            video.detections = dets.get(video.name, {})
    return DatasetView(
        "jhmdb", label_split, subset,
        list(label_split.train_classes if subset == "train" else label_split.test_classes),
        videos, single_label_classes=list(classes), multi_label=False, skipped=skipped,
    )


def _official_from_testlist(root: Path, folders: dict[str, tuple[str, Path]]) -> dict[str, set[str]]:
    """The official split-1 halves from the reference's ``testlist.txt`` (``class/video/frame.txt`` lines)."""
    path = find_file(root, "testlist.txt")
    if path is None:
        raise StclipError(
            "pool 'official' needs the official halves: jhmdb_{train,test}_gt_min.json (--anno), JHMDB-GT.pkl (--pkl) or "
            f"testlist.txt in {root} or {root}/annotations; or pass --pool all"
        )
    test = {line.split("/")[1] for line in _read_list(path) if line.count("/") >= 2}
    return {"train": set(folders) - test, "test": test}


def _image_size(path: Path) -> tuple[int, int]:
    height, width = load_image(path).shape[:2]
    return width, height
