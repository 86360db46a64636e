"""Tiny synthetic J-HMDB in the real on-disk format (frames + COCO-like GT JSONs + reference-style detections).

Each class has its own colour; its person is a rectangle of that colour moving over a noisy background, so a model
can learn the classes. Run as a script to make one for a smoke run: ``python tests/synthetic.py DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

JHMDB_CLASSES = [
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup", "push",
    "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand", "swing_baseball", "throw", "walk", "wave",
]
WIDTH, HEIGHT = 80, 60


def class_colour(index: int) -> np.ndarray:
    """A distinct RGB colour per class (hue wheel)."""
    hsv = np.uint8([[[int(180 * index / len(JHMDB_CLASSES)), 220, 230]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def person_box(frame: int, video: int) -> list[int]:
    """The moving person's box [x1, y1, x2, y2] in frame ``frame`` (1-based) of video number ``video``."""
    x = 5 + (3 * frame + 7 * video) % (WIDTH - 35)
    y = 6 + (video * 5) % (HEIGHT - 40)
    return [x, y, x + 24, y + 32]


def make_jhmdb(root: Path, videos_per_class: int = 2, frames: int = 12, classes: list[str] | None = None, seed: int = 0) -> Path:
    """Write ``root/videos/<class>/<video>/00001.png...``, jhmdb_{train,test}_gt_min.json and detections."""
    rng = np.random.default_rng(seed)
    classes = classes or JHMDB_CLASSES
    images, annotations, detections = [], [], []
    number = 0
    for cls in classes:
        label = JHMDB_CLASSES.index(cls)
        for k in range(videos_per_class):
            number += 1
            name = f"{cls}_video_{k}"
            folder = root / "videos" / cls / name
            folder.mkdir(parents=True, exist_ok=True)
            for frame in range(1, frames + 1):
                image = rng.integers(0, 90, (HEIGHT, WIDTH, 3), dtype=np.uint8)
                x1, y1, x2, y2 = person_box(frame, number)
                image[y1:y2, x1:x2] = class_colour(label)
                cv2.imwrite(str(folder / f"{frame:05d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                image_id = number * 10000 + frame
                images.append({"id": image_id, "img_path": f"{name}/{frame:05d}.png", "movie": name,
                               "timestamp": f"{frame:05d}", "width": WIDTH, "height": HEIGHT})
                annotations.append({"id": image_id * 1000 + 1, "image_id": image_id, "category_id": 1,
                                    "action_ids": [label + 1], "person_id": 1, "bbox": [x1, y1, x2, y2]})
                detections.append({"image_id": image_id, "category_id": 0, "bbox": [x1 + 1, y1, x2, y2 + 1], "score": "0.98"})
                detections.append({"image_id": image_id, "category_id": 0, "bbox": [0, 0, 10, 10], "score": "0.05"})
    # like the official halves: the first video of each class in the train file, the others in the test file
    for subset, keep in (("train", lambda m: m.endswith("_0")), ("test", lambda m: not m.endswith("_0"))):
        ids = {im["id"] for im in images if keep(im["movie"])}
        (root / f"jhmdb_{subset}_gt_min.json").write_text(json.dumps(
            {"categories": [{"id": 1, "name": "person"}], "images": [im for im in images if im["id"] in ids],
             "annotations": [a for a in annotations if a["image_id"] in ids]}))
    (root / "jhmdb_faster_RCNN_person.json").write_text(json.dumps(detections))
    return root


if __name__ == "__main__":
    print(make_jhmdb(Path(sys.argv[1]), videos_per_class=int(sys.argv[2]) if len(sys.argv) > 2 else 3))
