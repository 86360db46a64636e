"""UCF101-24 reader: ``<root>/rgb-images/<Class>/<video>/00001.jpg`` frames and ``UCF101v2-GT.pkl``.

The pickle (same layout as JHMDB-GT.pkl, video keys ``"Class/v_Class_g01_c01"``) may sit in the root, in
``<root>/annotations/`` or in ``<root>/splitfiles/``. Videos are those of official split 1 (``train_videos[0]``
for train, ``test_videos[0]`` for test) whose class is in the label split's train / test classes; ``pool="all"``
takes the videos of both halves (the same option as J-HMDB's; no reference code exists for UCF101-24).
"""

from __future__ import annotations

from pathlib import Path

from stclip_cli.data.common import DatasetView, VideoRecord
from stclip_cli.data.jhmdb import POOLS, SUBSETS, find_file, load_gt_pickle, pickle_ground_truth
from stclip_cli.data.splits import get_split
from stclip_cli.errors import StclipError

PICKLE_NAME = "UCF101v2-GT.pkl"


def open_ucf24(root: Path, split: int, subset: str, pkl: Path | None = None, pool: str = "official") -> DatasetView:
    """Videos of ``subset`` (train/test) of ZS-UCF ``split`` with their ground truth (no detections)."""
    root = Path(root)
    label_split = get_split("ucf24", split)
    if subset not in SUBSETS:
        raise StclipError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if pool not in POOLS:
        raise StclipError(f"unknown video pool {pool!r}: expected one of {', '.join(POOLS)}")
    if not any(root.glob("rgb-images/*/*/00001.jpg")):
        raise StclipError(
            f"UCF101-24 frames not found: expected {root}/rgb-images/<Class>/<video>/00001.jpg; "
            "set --data-root or STCLIP_DATA"
        )
    if pkl is None:
        pkl = find_file(root, PICKLE_NAME) or find_file(root, f"splitfiles/{PICKLE_NAME}")
        if pkl is None:
            raise StclipError(
                f"UCF101-24 annotations not found: expected {PICKLE_NAME} in {root}, {root}/annotations or "
                f"{root}/splitfiles; pass --anno FILE"
            )
    data = load_gt_pickle(Path(pkl))
    gt = pickle_ground_truth(data)
    classes = label_split.train_classes if subset == "train" else label_split.test_classes
    halves = ["train_videos" if subset == "train" else "test_videos"] if pool == "official" else ["train_videos", "test_videos"]
    keys = [key for half in halves for key in data[half][0]]
    videos, skipped = [], []
    for key in keys:
        cls = key.split("/")[0]
        if cls not in classes:
            continue
        if key not in gt:
            skipped.append(key)
            continue
        folder = root / "rgb-images" / key
        frame_paths = sorted(folder.glob("*.jpg"))
        if not frame_paths:
            raise StclipError(
                f"UCF101-24 frames not found: expected {folder}/00001.jpg; set --data-root or STCLIP_DATA"
            )
        height, width = (int(v) for v in data["resolution"][key])
        videos.append(VideoRecord(key, width, height, len(frame_paths), frame_paths, label=cls, gt=gt[key]))
    return DatasetView(
        "ucf24", label_split, subset, list(classes), videos,
        single_label_classes=list(label_split.all_classes), multi_label=False, skipped=skipped,
    )
