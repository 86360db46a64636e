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


# --- training: projector initialisation, batches, loss normaliser ---------------------------------------------------


def test_projectors_start_as_nn_linear_defaults():
    """benchmarks.md: the reference's projectors keep nn.Linear's default init, uniform in +-1/sqrt(fan_in) for
    weights and biases (not a truncated normal with zero bias)."""
    import math

    import torch

    from stclip_cli.model.prompting import ContextPrompting

    torch.manual_seed(0)
    prompting = ContextPrompting(layers=2, width=768, embed_dim=512)
    bound = 1 / math.sqrt(768)
    for projector in prompting.projectors:
        for tensor in (projector.weight, projector.bias):
            assert tensor.abs().max() <= bound and tensor.abs().max() > 0.95 * bound
            assert tensor.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)  # uniform, not std 0.02
        assert projector.bias.count_nonzero() == projector.bias.numel()
    layer = prompting.layers[0]
    assert not layer.attn.out.bias.any() and layer.attn.q.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_sampler_drops_the_partial_batch_and_never_repeats_a_keyframe():
    from stclip_cli.train import StepBatchSampler

    size, batch = 10, 4  # two full batches per epoch; the remaining 2 keyframes of each epoch are dropped
    sampler = StepBatchSampler(size, batch, seed=2, start=0, stop=12)
    batches = list(sampler)
    assert len(batches) == 12 and all(len(b) == batch and len(set(b)) == batch for b in batches)
    epochs = [batches[k : k + 2] for k in range(0, 12, 2)]
    for first, second in epochs:
        assert not set(first) & set(second)  # one pass over the data: no keyframe twice within an epoch
    assert len({tuple(e[0]) for e in epochs}) > 1  # a new permutation every epoch
    assert list(StepBatchSampler(size, batch, 2, 5, 7)) == batches[5:7]  # resumable by step
    shares = [list(StepBatchSampler(size, batch, 2, 0, 4, rank=r, world=2)) for r in range(2)]
    assert all(sorted(a + b) == sorted(g) for a, b, g in zip(*shares, batches))


def test_sampler_needs_one_full_batch():
    from stclip_cli.errors import StclipError
    from stclip_cli.train import StepBatchSampler

    with pytest.raises(StclipError, match="only 3 training keyframes, fewer than one batch of 8: lower --batch-size"):
        StepBatchSampler(3, 8, 0, 0, 10)


def test_loss_divides_by_the_box_count_given():
    """One process: the batch's own box count; several: the count averaged over ranks (the trainer all-reduces it)."""
    import torch

    from stclip_cli.losses import action_loss

    logits, labels = torch.randn(3, 4), torch.eye(4)[[0, 2, 1]]
    single = torch.ones(4, dtype=torch.bool)
    own = action_loss(logits, labels, single)
    torch.testing.assert_close(action_loss(logits, labels, single, boxes=torch.tensor(5.0)), own * 3 / 5)
