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

from conftest import SHARED, one_line_error
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
    from stclip_cli.benchmark.train import StepBatchSampler

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
    from stclip_cli.benchmark.train import StepBatchSampler

    with pytest.raises(StclipError, match="only 3 training keyframes, fewer than one batch of 8: lower --batch-size"):
        StepBatchSampler(3, 8, 0, 0, 10)


def test_loss_divides_by_the_box_count_given():
    """One process: the batch's own box count; several: the count averaged over ranks (the trainer all-reduces it)."""
    import torch

    from stclip_cli.benchmark.losses import action_loss

    logits, labels = torch.randn(3, 4), torch.eye(4)[[0, 2, 1]]
    single = torch.ones(4, dtype=torch.bool)
    own = action_loss(logits, labels, single)
    torch.testing.assert_close(action_loss(logits, labels, single, boxes=torch.tensor(5.0)), own * 3 / 5)


# --- test boxes, scores, border: the reference's J-HMDB test protocol ----------------------------------------------


class RecordingScorer:
    """Stands in for ``Scorer``: fixed probabilities per box, and a record of the boxes it was asked to score."""

    def __init__(self, classes: list[str], probs: list[float]) -> None:
        from types import SimpleNamespace

        self.actions, self.probs, self.seen = list(classes), np.asarray(probs, np.float32), []
        self.model = SimpleNamespace(window=1, uses_patches=False)

    def reset(self) -> None:
        pass

    def ingest(self, index, image) -> None:
        pass

    def score(self, images, requests):
        self.seen.extend(np.array(r.boxes) for r in requests)
        return [np.tile(self.probs, (len(r.boxes), 1)) for r in requests]


def _one_frame_view(tmp_path: Path, boxes: list[list[float]], scores: list[float] | None, size=(100, 80)):
    from stclip_cli.data.common import DatasetView, FrameBoxes, VideoRecord
    from stclip_cli.data.splits import get_split

    width, height = size
    path = tmp_path / "00001.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    gt = {0: FrameBoxes(np.array([[10, 10, 40, 60]], np.float32), [["clap"]])}
    dets = None if scores is None else {0: (np.array(boxes, np.float32), np.array(scores, np.float32))}
    video = VideoRecord("v", width, height, 1, [path], label="clap", gt=gt, detections=dets)
    return DatasetView("jhmdb", get_split("jhmdb", 1), "test", ["clap", "sit"], [video], ["clap", "sit"], False)


def _rows(monkeypatch) -> list:
    import stclip_cli.benchmark.evaluate as evaluate

    rows: list = []
    real = evaluate.frame_ap
    monkeypatch.setattr(evaluate, "frame_ap", lambda dets, gt, classes: (rows.extend(dets), real(rows, gt, classes))[1])
    return rows


def evaluate(view, scorer, persons, protocol):
    """The evaluator on the pipeline's predictor, with the protocol as its options (as `stclip eval` builds it)."""
    from stclip_cli.benchmark.evaluate import evaluate_view
    from stclip_cli.benchmark.persons import FixedBoxes
    from stclip_cli.core.predictor import DetectOptions, Predictor
    from stclip_cli.records import ModelInfo

    predictor = Predictor(FixedBoxes({}), scorer, DetectOptions(**protocol.detect_settings()))
    return evaluate_view(view, predictor, ModelInfo("m", "b", None, "softmax"), persons, protocol)


FIVE = [[10, 10, 40, 60], [60, 50, 100, 80], [0, 0, 20, 20], [50, 0, 70, 30], [20, 20, 50, 50]]
FIVE_SCORES = [0.7, 0.9, 0.2, 0.5, 0.6]


def test_top3_boxes_scored_with_probability_times_detector_score(tmp_path, monkeypatch):
    from stclip_cli.benchmark.evaluate import eval_protocol
    from stclip_cli.benchmark.persons import DatasetPersons
    from stclip_cli.core.preprocess import crop_boxes

    view = _one_frame_view(tmp_path, FIVE, FIVE_SCORES)
    scorer, rows = RecordingScorer(["clap", "sit"], [0.8, 0.2]), _rows(monkeypatch)
    result = evaluate(view, scorer, DatasetPersons(), eval_protocol("jhmdb"))
    # the 3 best detections (0.9, 0.7, 0.6), best first; no threshold
    np.testing.assert_array_equal(scorer.seen[0], [FIVE[1], FIVE[0], FIVE[4]])
    assert [(r[1], round(r[2], 6)) for r in rows] == [
        ("clap", 0.72), ("sit", 0.18), ("clap", 0.56), ("sit", 0.14), ("clap", 0.48), ("sit", 0.12)]
    # the box on the right/bottom border is cut at width - 1 / height - 1 (inclusive pixels)
    assert crop_boxes(scorer.seen[0][:1], 100, 80).tolist() == [[60, 50, 99, 79]]
    assert result.coverage == {"videos": 1, "frames": 1, "videos_without_detections": 0, "videos_without_predictions": 0}
    # the named variants: the paper's filter (best box only at margin 0.001) and the bare probability
    scorer, rows = RecordingScorer(["clap", "sit"], [0.8, 0.2]), _rows(monkeypatch)
    evaluate(view, scorer, DatasetPersons(), eval_protocol("jhmdb", "fp-filter", "prob"))
    np.testing.assert_array_equal(scorer.seen[0], [FIVE[1]])
    assert [(r[1], round(r[2], 6)) for r in rows] == [("clap", 0.8), ("sit", 0.2)]


def test_border_crop_and_empty_boxes(tmp_path, monkeypatch):
    from dataclasses import asdict

    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from stclip_cli.benchmark.evaluate import eval_protocol
    from stclip_cli.benchmark.persons import DatasetPersons
    from stclip_cli.core.preprocess import ClipPreprocess

    image = np.random.default_rng(1).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    crop = ClipPreprocess(asdict(PreprocessCfg(size=224))).person_crops(image, np.array([[60.0, 50.0, 100.0, 80.0]]))[0]
    expected = image_transform_v2(PreprocessCfg(size=224), is_train=False)(Image.fromarray(image[50:79, 60:99]))
    torch.testing.assert_close(crop, expected, atol=0, rtol=0)
    # a box left empty by the clip to [0, w - 1] is dropped, not scored
    view = _one_frame_view(tmp_path, [[99.5, 10, 100, 40], [10, 10, 40, 60]], [0.9, 0.5])
    scorer = RecordingScorer(["clap", "sit"], [0.8, 0.2])
    evaluate(view, scorer, DatasetPersons(), eval_protocol("jhmdb"))
    np.testing.assert_array_equal(scorer.seen[0], [[10, 10, 40, 60]])
    view.videos[0].detections = {}
    result = evaluate(view, RecordingScorer(["clap", "sit"], [0.8, 0.2]), DatasetPersons(), eval_protocol("jhmdb"))
    assert result.coverage == {"videos": 1, "frames": 0, "videos_without_detections": 1, "videos_without_predictions": 1}
    assert result.aps["clap"] == 0.0  # its ground truth counts as missed


@pytest.mark.parametrize("kwargs, message", [
    ({"test_boxes": "top5"}, "unknown --test-boxes 'top5': expected one of top3, fp-filter"),
    ({"score": "det"}, "unknown --score 'det': expected one of prob-x-det, prob"),
    ({"fp_margin": 0.1}, "--fp-margin is the margin of --test-boxes fp-filter; top3 uses no threshold"),
    ({"test_boxes": "fp-filter", "fp_margin": -1.0}, "--fp-margin must be a finite number >= 0, got -1.0"),
    ({"max_persons": 0}, "--max-persons must be at least 1, got 0"),
])
def test_bad_protocol_options(kwargs, message):
    from stclip_cli.errors import StclipError
    from stclip_cli.benchmark.evaluate import eval_protocol

    with pytest.raises(StclipError) as err:
        eval_protocol("jhmdb", **kwargs)
    assert str(err.value) == message


def test_protocol_defaults_per_dataset():
    from stclip_cli.benchmark.evaluate import eval_protocol

    assert eval_protocol("jhmdb").record("official", False, {}) == {
        "pool": "official", "test_boxes": "top3", "fp_margin": None, "max_persons": 3, "score": "prob-x-det",
        "border": "inclusive"}
    for dataset in ("ucf24", "ava"):  # no reference code: the paper's filter at 0.7
        protocol = eval_protocol(dataset)
        assert (protocol.test_boxes, protocol.fp_margin, protocol.max_persons, protocol.score) == (
            "fp-filter", 0.7, None, "prob-x-det")
    assert eval_protocol("jhmdb", "fp-filter").fp_margin == 0.001


# --- end to end: `stclip eval` on a synthetic J-HMDB, the mAP worked out by hand ---------------------------------

SPLIT1 = ["clap", "sit", "wave", "throw", "pullup", "catch"]
FAR = {(0, 0, 10, 10): [0.9, 0.02, 0.02, 0.02, 0.02, 0.02],      # d2, detector 0.8
       (50, 0, 60, 10): [0.02, 0.9, 0.02, 0.02, 0.02, 0.02],     # d3, detector 0.5
       (60, 40, 70, 50): [0.45, 0.45, 0.025, 0.025, 0.025, 0.025],  # d4, detector 0.3 (not in the top 3)
       (65, 45, 75, 55): [0.45, 0.45, 0.025, 0.025, 0.025, 0.025]}  # d5, detector 0.2 (not in the top 3)
ON_PERSON = {"clap": [0.6, 0.2, 0.05, 0.05, 0.05, 0.05], "sit": [0.1, 0.7, 0.05, 0.05, 0.05, 0.05]}  # d1, detector 0.9


@pytest.fixture(scope="module")
def hand_jhmdb(tmp_path_factory):
    """Two frames per video; the test pool (official half) is clap_video_1 and sit_video_1. Every test frame gets 5
    detections: d1 = the person's box (0.9) and four boxes far from it (0.8, 0.5, 0.3, 0.2)."""
    import json

    from synthetic import make_jhmdb, person_box

    root = make_jhmdb(tmp_path_factory.mktemp("hand"), videos_per_class=2, frames=2, classes=["clap", "sit", "brush_hair"])
    dets, persons = [], {}
    for number, cls in ((2, "clap"), (4, "sit")):  # make_jhmdb numbers videos clap_0, clap_1, sit_0, sit_1, ...
        for frame in (1, 2):
            box = person_box(frame, number)
            persons[tuple(box)] = cls
            for b, s in [(box, "0.9"), ([0, 0, 10, 10], "0.8"), ([50, 0, 60, 10], "0.5"), ([60, 40, 70, 50], "0.3"),
                         ([65, 45, 75, 55], "0.2")]:
                dets.append({"image_id": number * 10000 + frame, "category_id": 0, "bbox": b, "score": s})
    (root / "jhmdb_faster_RCNN_person.json").write_text(json.dumps(dets))
    return root, persons


def test_eval_end_to_end_matches_the_hand_computed_map(hand_jhmdb, checkpoint, tmp_path, monkeypatch):
    """By hand, top3 x prob-x-det: clap detections 0.72 (d2) x4 FP, 0.54 (d1, clap video) x2 TP, then FPs:
    AP = 1/3. sit: 0.63 (d1, sit video) x2 TP first: AP = 1. mAP = 2/3.
    prob: clap as before 1/3; sit 0.9 (d3) x4 FP before 0.7 x2 TP: 1/3; mAP = 1/3.
    fp-filter (0.001): d1 alone per frame; clap 0.54 x2 TP then 0.09 FP: 1; sit 1; mAP = 1."""
    import json

    from typer.testing import CliRunner

    from stclip_cli.cli import app
    from stclip_cli.core.scoring import Scorer

    root, persons = hand_jhmdb

    def probabilities(self, images, requests):
        rows = []
        for r in requests:
            keys = [tuple(int(round(v)) for v in box) for box in r.boxes]
            rows.append(np.array([ON_PERSON[persons[k]] if k in persons else FAR[k] for k in keys], np.float32))
        return rows

    monkeypatch.setattr(Scorer, "score", probabilities)

    def run(*args) -> dict:
        out = tmp_path / "r.json"
        result = CliRunner().invoke(app, [str(a) for a in ("eval", "--dataset", "jhmdb", "--split", "1", "--data-root", root,
                                    "--model", "tiny-test", "--checkpoint", checkpoint, "--device", "cpu", "--quiet",
                                    "--json", out, *args)])
        assert result.exit_code == 0, result.output
        assert "note: scored 4 frame(s) of 2 test video(s); 0 test video(s) had no person boxes, 0 no predictions" in result.output
        data = json.loads(out.read_text())
        out.unlink()
        return data

    default = run()
    assert default["map"] == pytest.approx(2 / 3) and default["ap"]["clap"] == pytest.approx(1 / 3)
    assert set(default["ap"]) == set(SPLIT1) and default["videos"] == 2
    assert default["protocol"] == {"pool": "official", "test_boxes": "top3", "fp_margin": None, "max_persons": 3,
                                   "score": "prob-x-det", "border": "inclusive", "videos": 2, "frames": 4,
                                   "videos_without_detections": 0, "videos_without_predictions": 0}
    assert run("--score", "prob")["map"] == pytest.approx(1 / 3)
    filtered = run("--test-boxes", "fp-filter")
    assert filtered["map"] == pytest.approx(1.0) and filtered["protocol"]["fp_margin"] == 0.001
    bad = CliRunner().invoke(app, ["eval", "--dataset", "jhmdb", "--split", "1", "--data-root", str(root), "--model",
                                   "tiny-test", "--checkpoint", str(checkpoint), "--test-boxes", "top5"])
    assert one_line_error(bad) == "error: unknown --test-boxes 'top5': expected one of top3, fp-filter"
    bad = CliRunner().invoke(app, ["eval", "--dataset", "ava", "--split", "1", "--data-root", str(root), "--model",
                                   "tiny-test", "--checkpoint", str(checkpoint), "--pool", "all"])
    assert one_line_error(bad) == "error: --pool chooses J-HMDB or UCF101-24 videos; ava's videos are fixed by its split"
