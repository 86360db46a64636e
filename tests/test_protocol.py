"""The reference's benchmark protocol, checked against facts of the reference (benchmarks.md), not against our code:
which J-HMDB videos train and test, which boxes are scored and how, projector initialisation, the batch sampler.

Tests that read the real annotation files skip when ../shared is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED
from stclip_cli.data import open_dataset

ZS_JHMDB = SHARED / "data" / "zs_jhmdb"
# benchmarks.md: the reference's pools per split (videos in the subset's JSON and in the split's list)
POOL_SIZES = {1: (464, 78), 2: (486, 73), 3: (468, 78), 4: (474, 76)}


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def real_jhmdb(tmp_path_factory) -> Path:
    """The real annotation files and split lists, with a one-frame folder per video (J-HMDB frames are not shared)."""
    if not (ZS_JHMDB / "jhmdb_test_gt_min.json").is_file():
        pytest.skip(f"{ZS_JHMDB} not available")
    root = tmp_path_factory.mktemp("real-jhmdb")
    frame = root / "frame.png"
    cv2.imwrite(str(frame), np.zeros((2, 2, 3), np.uint8))
    videos = {v for k in range(1, 5) for name in ("train", "test") for v in _lines(ZS_JHMDB / f"label_split_{k}/{name}_video.txt")}
    for video in videos:
        folder = root / "videos" / "any" / video
        folder.mkdir(parents=True)
        os.link(frame, folder / "00001.png")
    for name in ["jhmdb_test_gt_min.json", *(f"label_split_{k}" for k in range(1, 5))]:
        (root / name).symlink_to(ZS_JHMDB / name)
    return root


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_jhmdb_reference_pools_from_the_real_files(real_jhmdb, split):
    import json

    test_movies = {im["movie"] for im in json.loads((ZS_JHMDB / "jhmdb_test_gt_min.json").read_text())["images"]}
    test_list = _lines(ZS_JHMDB / f"label_split_{split}/test_video.txt")
    train_list = _lines(ZS_JHMDB / f"label_split_{split}/train_video.txt")
    test = open_dataset("jhmdb", real_jhmdb, split, "test")
    assert {v.name for v in test.videos} == set(test_list) & test_movies and not test.skipped
    # the train JSON is not shared: every train video is in the pool but has no annotation here (skipped)
    train = open_dataset("jhmdb", real_jhmdb, split, "train")
    assert not train.videos and set(train.skipped) == set(train_list) - test_movies
    assert (len(train.skipped), len(test.videos)) == POOL_SIZES[split]
    everything = open_dataset("jhmdb", real_jhmdb, split, "test", pool="all")
    assert len(everything.videos) + len(everything.skipped) == len(test_list)
    if split == 1:
        assert len(test.videos) == 78 and len(test_list) == 274
